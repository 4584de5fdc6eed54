-- blob_commit: makes an upload, sent in chunks to a key of its own, the stored manifest file,
-- once every chunk has arrived whole. Until then nothing is stored under the file's digest.
-- KEYS[1] the upload (HASH of chunk index to bytes), KEYS[2] the blob
-- ARGV[1] the file's size in bytes, ARGV[2] the chunk size
-- Returns 1 when the blob is stored (by this upload or an earlier one); an error naming the
-- first chunk that is missing or of the wrong length otherwise.
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[1])
  return 1
end
local size, chunk = tonumber(ARGV[1]), tonumber(ARGV[2])
if not size or not chunk or size < 0 or chunk < 1 or size % 1 ~= 0 or chunk % 1 ~= 0 then
  return redis.error_reply('ERR blob_commit: bad size or chunk size')
end
local chunks = math.ceil(size / chunk)
-- A chunk too many means a different file was sent under this upload key.
if redis.call('HLEN', KEYS[1]) ~= chunks then
  return redis.error_reply('INCOMPLETE upload holds ' .. redis.call('HLEN', KEYS[1]) ..
    ' of ' .. chunks .. ' chunks')
end
for i = 0, chunks - 1 do
  local expected = chunk
  if i == chunks - 1 then
    expected = size - chunk * (chunks - 1)
  end
  if redis.call('HSTRLEN', KEYS[1], i) ~= expected then
    return redis.error_reply('INCOMPLETE upload chunk ' .. i .. ' is missing or cut short')
  end
end
redis.call('HSET', KEYS[1], 'size', size, 'chunk', chunk)
redis.call('RENAME', KEYS[1], KEYS[2])
-- The upload key expires should its sender vanish; the file lives as long as its users.
redis.call('PERSIST', KEYS[2])
return 1
