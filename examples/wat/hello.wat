;; hello.wat: a wasmjob task in plain WebAssembly text, without the SDK or any compiler.
;;
;; It shows that a task needs nothing but WASI preview 1 (module `wasi_snapshot_preview1`) and
;; the wasmjob contract (crate wasmjob-host-api):
;;
;; * the module is a WASI *command*: it exports its linear memory as `memory` and an entry point
;;   `_start`, which the host calls once per attempt on a fresh instance;
;; * `argv` is `[script, value]`: `args_sizes_get` and `args_get` read it, and argv[1] is the task
;;   value in decimal;
;; * stdout (file descriptor 1) is the task's result: `fd_write` prints
;;   `hello from wat task <value>` and a newline, looping since a write may be short;
;; * the exit code is the outcome: returning from `_start` is success (exit 0); `proc_exit(1)`
;;   is a retryable error; `proc_exit(100)` (EXIT_FATAL) is fatal, never retried. It exits 100
;;   when there is no argv[1], since retrying could not bring one.
;;
;; It uses none of the optional `wasmjob_v1` host imports, so any WASI preview-1 runtime runs it.
;;
;; The host compiles WebAssembly text as it does binary modules, so from the workspace root:
;;
;;   wasmjob run examples/wat/hello.wat --range 1..=3
;;
;; The test suite runs it the same way, through the `wasmjob` binary.

(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param $argc_out i32) (param $buf_size_out i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param $argv i32) (param $argv_buf i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nwritten_out i32)
                    (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param $code i32)))

  ;; Memory map:
  ;;    0  argc (i32)                4  size of the argument strings (i32)
  ;;   16  one iovec {ptr, len}     24  bytes written (i32)
  ;;   64  "hello from wat task "
  ;; 1024  argv pointers, then the argument strings, then the output line (the memory grows
  ;;       if they do not fit)
  (memory (export "memory") 1)
  (data (i32.const 64) "hello from wat task ")

  (global $EXIT_ERROR i32 (i32.const 1))
  (global $EXIT_FATAL i32 (i32.const 100))

  (func (export "_start")
    (local $argc i32) (local $argv i32) (local $strings i32) (local $line i32)
    (local $value i32) (local $len i32) (local $end i32) (local $left i32)

    ;; How many arguments, and how many bytes their strings take.
    (if (call $args_sizes_get (i32.const 0) (i32.const 4))
      (then (call $proc_exit (global.get $EXIT_ERROR))))
    (local.set $argc (i32.load (i32.const 0)))
    (if (i32.lt_u (local.get $argc) (i32.const 2))
      (then (call $proc_exit (global.get $EXIT_FATAL))))

    ;; Make room for the pointer array, the strings and the line (greeting + value + newline;
    ;; the value is at most as long as all the strings).
    (local.set $argv (i32.const 1024))
    (local.set $strings (i32.add (local.get $argv) (i32.mul (local.get $argc) (i32.const 4))))
    (local.set $line (i32.add (local.get $strings) (i32.load (i32.const 4))))
    (local.set $end (i32.add (i32.add (local.get $line) (i32.const 21)) (i32.load (i32.const 4))))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq (i32.const -1)
              (memory.grow
                (i32.sub
                  (i32.div_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 65536))
                  (memory.size))))
          (then (call $proc_exit (global.get $EXIT_ERROR))))))
    (if (call $args_get (local.get $argv) (local.get $strings))
      (then (call $proc_exit (global.get $EXIT_ERROR))))

    ;; argv[1] is a NUL-terminated string: find its length.
    (local.set $value (i32.load offset=4 (local.get $argv)))
    (block $found
      (loop $next
        (br_if $found (i32.eqz (i32.load8_u (i32.add (local.get $value) (local.get $len)))))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (br $next)))

    ;; Assemble the line: greeting, value, newline.
    (memory.copy (local.get $line) (i32.const 64) (i32.const 20))
    (memory.copy (i32.add (local.get $line) (i32.const 20)) (local.get $value) (local.get $len))
    (i32.store8 (i32.add (local.get $line) (i32.add (i32.const 20) (local.get $len))) (i32.const 10))
    (local.set $left (i32.add (local.get $len) (i32.const 21)))

    ;; Write it to stdout. fd_write may write less than asked, so loop until all is out.
    (block $written
      (loop $more
        (br_if $written (i32.eqz (local.get $left)))
        (i32.store (i32.const 16) (local.get $line))
        (i32.store (i32.const 20) (local.get $left))
        (if (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))
          (then (call $proc_exit (global.get $EXIT_ERROR))))
        (if (i32.eqz (i32.load (i32.const 24)))
          (then (call $proc_exit (global.get $EXIT_ERROR))))
        (local.set $line (i32.add (local.get $line) (i32.load (i32.const 24))))
        (local.set $left (i32.sub (local.get $left) (i32.load (i32.const 24))))
        (br $more)))
    ;; Returning from `_start` is exit code 0: success.
  )
)
