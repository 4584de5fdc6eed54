-- blob_release: records that a job no longer uses a stored manifest file; the bytes go with
-- their last user. A blob with no users recorded (stored by an older wasmjob) is kept.
-- KEYS[1] the blob, KEYS[2] its users (SET of job ids)
-- ARGV[1] the job id
-- Returns 1 when the bytes were removed, else 0.
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
