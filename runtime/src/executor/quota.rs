//! The scratch directory's quota and the cap on open files, enforced at the WASI boundary.
//!
//! wasmtime-wasi gives the guest real host files, and nothing in it bounds how much a guest
//! writes into its scratch directory, how many entries it creates there or how many descriptors
//! it holds open (each one a host descriptor of the worker process). So this module wraps the few
//! WASI preview-1 calls that do those things. Each is checked against the attempt's [`Quota`]
//! before the real call runs, and refused with the errno a full disk or a full descriptor table
//! gives (`ENOSPC`, `EDQUOT`, `EMFILE`): the guest sees an ordinary I/O error, and the executor
//! reports the attempt as over its scratch limit if it then fails.
//!
//! Counting is cheap, by what the calls ask for; only when a call would pass a limit is the
//! scratch directory walked to count what it really holds, so overwritten and deleted data is
//! given back. A walk costs a `stat` per entry, so it is done only if the directory changed in
//! a way that can have left less in it than counted since the last walk: a run of refused calls
//! costs one walk, not one each (a guest making 10,000 files against a quota of 1,000 used to
//! hold its worker for 18 s that way). The real calls are wasmtime-wasi's own (the functions its
//! linker registers), called the way its linker calls them; stdout and stderr (fds 1 and 2) have
//! caps of their own and pass unchecked.
//!
//! One more call is wrapped for the host's memory rather than the disk: `poll_oneoff`, whose
//! host-side cost per subscription is far above the guest bytes wasmtime-wasi charges it, is
//! held to the same per-call budget as every other call (the store's host-call fuel, the
//! guest's memory limit at most).
//!
//! Kept whole above 400 lines: each wrapped call and what it counts in the [`Quota`] (a creation,
//! a write, a truncation, a removal) are two halves of one rule, and split apart they would drift.

use super::TaskState;
use std::path::{Path, PathBuf};
use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::types::Errno;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};
use wiggle::GuestMemory;

const WASI: &str = "wasi_snapshot_preview1";

/// The most descriptors an attempt may have open at once, preopens and stdio included. Far
/// above what a task needs, far below what would starve the worker process.
pub(crate) const MAX_OPEN_FILES: u32 = 256;

/// Descriptors open when the guest starts: stdin, stdout, stderr and the three preopens.
const INITIAL_OPEN_FILES: u32 = 6;

/// What the host allocates for one subscription of `poll_oneoff` (a pollable, its table entry,
/// a stream for a file), guest arrays included, rounded up: the worker's peak grew by 430 bytes
/// a subscription with 65,000 and by 730 with 500,000.
const HOST_BYTES_PER_SUBSCRIPTION: u64 = 1024;

/// `oflags` bit of `path_open` that creates the file.
const O_CREAT: i32 = 1;

/// `oflags` bit of `path_open` that fails if the file exists: an open with it that succeeds
/// surely created an entry.
const O_EXCL: i32 = 4;

/// `oflags` bit of `path_open` that truncates the file, giving its bytes back.
const O_TRUNC: i32 = 8;

/// What one attempt may still put into its scratch directory, and what it holds open.
#[derive(Debug)]
pub(crate) struct Quota {
    scratch: PathBuf,
    max_bytes: u64,
    max_entries: u64,
    /// Bytes written so far (an over-estimate of what the directory holds, trued up near the
    /// limit).
    bytes: u64,
    /// Entries created and not removed so far (likewise).
    entries: u64,
    /// Set when a call may have left the directory holding fewer bytes than `bytes` says (a
    /// write over old data, a truncation, a removal) since it was last walked. Only then can a
    /// walk give bytes back, so only then does a refused write walk it.
    bytes_stale: bool,
    /// Likewise for `entries` (an open with `O_CREAT` of a file that was there, a rename over
    /// one).
    entries_stale: bool,
    open: u32,
    /// Set once a write or a creation was refused, so that a failure which follows is reported
    /// as the scratch limit rather than as its symptom.
    pub(crate) refused: bool,
    /// Set when a call that can create a directory entry is made, whether or not it succeeds.
    /// Those calls are the only way an entry can appear (the other preopens are read-only, and
    /// a rename needs an entry already there), so an untouched scratch directory is still
    /// empty and can serve the next attempt without being looked at.
    pub(crate) touched: bool,
}

impl Quota {
    pub(crate) fn new(scratch: &Path, max_bytes: u64, max_entries: u32) -> Self {
        Quota {
            scratch: scratch.to_path_buf(),
            max_bytes,
            max_entries: max_entries.into(),
            bytes: 0,
            entries: 0,
            bytes_stale: false,
            entries_stale: false,
            open: INITIAL_OPEN_FILES,
            refused: false,
            touched: false,
        }
    }

    /// Whether `bytes` more may be written.
    fn allow_bytes(&mut self, bytes: u64) -> bool {
        if self.bytes_stale && self.bytes.saturating_add(bytes) > self.max_bytes {
            self.recount();
        }
        let allowed = self.bytes.saturating_add(bytes) <= self.max_bytes;
        self.refused |= !allowed;
        allowed
    }

    /// Whether one more file, directory or link may be created.
    fn allow_entry(&mut self) -> bool {
        if self.entries_stale && self.entries >= self.max_entries {
            self.recount();
        }
        let allowed = self.entries < self.max_entries;
        self.refused |= !allowed;
        allowed
    }

    /// Counts what the scratch directory really holds: allocated bytes (so sparse files cost
    /// what they use) and entries. Links are counted, never followed.
    fn recount(&mut self) {
        let (mut bytes, mut entries) = (0u64, 0u64);
        let mut dirs = vec![self.scratch.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(listing) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in listing.flatten() {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                entries += 1;
                bytes += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
                if meta.is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        self.bytes = bytes;
        self.entries = entries;
        self.bytes_stale = false;
        self.entries_stale = false;
    }

    /// Counts `bytes` written; they may have replaced old ones.
    fn wrote(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.bytes_stale = true;
    }

    /// Counts an entry created, or perhaps only opened if it may have been there already.
    fn created(&mut self, surely_new: bool) {
        self.entries += 1;
        self.entries_stale |= !surely_new;
    }

    /// Counts an entry removed (a file unlinked, an empty directory removed), with its bytes.
    fn removed(&mut self) {
        self.entries = self.entries.saturating_sub(1);
        self.bytes_stale = true;
    }

    /// Counts a rename, which replaces the entry at its target if there was one.
    fn renamed(&mut self) {
        self.bytes_stale = true;
        self.entries_stale = true;
    }

    /// Counts a file's size set, which gives its bytes back if it shrank.
    fn resized(&mut self) {
        self.bytes_stale = true;
    }

    /// Counts a descriptor closed.
    fn closed(&mut self) {
        self.open = self.open.saturating_sub(1);
    }
}

/// Runs wasmtime-wasi's own implementation of a preview-1 call, exactly as its linker does:
/// the guest's memory, the store's host-call fuel, then the call. Evaluates to the errno.
macro_rules! real_call {
    ($caller:ident, $func:ident ( $($arg:expr),* $(,)? )) => {{
        let fuel = $caller.as_context_mut().hostcall_fuel();
        let Some(Extern::Memory(memory)) = $caller.get_export("memory") else {
            wasmtime::bail!("missing required memory export");
        };
        let (bytes, state) = memory.data_and_store_mut(&mut $caller);
        state.wasi.set_hostcall_fuel(fuel);
        let mut memory = GuestMemory::Unshared(bytes);
        p1::$func(&mut state.wasi, &mut memory, $($arg),*).await?
    }};
}

/// The checked form of a call that writes bytes: refused with `ENOSPC` when the bytes it asks
/// to write do not fit, counted when it succeeds. stdin, stdout and stderr pass unchecked.
macro_rules! checked_write {
    ($caller:ident, $fd:ident, $iovs:ident, $iovs_len:ident, $nwritten:ident, $real:expr) => {{
        let checked = $fd > 2;
        if checked && !allow_write(&mut $caller, $iovs, $iovs_len) {
            return Ok(Errno::Nospc as i32);
        }
        let errno = $real;
        if checked && errno == 0 {
            count_written(&mut $caller, $nwritten);
        }
        Ok(errno)
    }};
}

/// The checked form of a call that creates one directory entry: refused with `EDQUOT` when the
/// scratch directory is full, counted when it succeeds.
macro_rules! checked_creation {
    ($caller:ident, $real:expr) => {{
        if !$caller.data_mut().quota.allow_entry() {
            return Ok(Errno::Dquot as i32);
        }
        $caller.data_mut().quota.touched = true;
        let errno = $real;
        if errno == 0 {
            $caller.data_mut().quota.created(true);
        }
        Ok(errno)
    }};
}

/// The counted form of a call that is never refused: when it succeeds, `$count` (a `Quota`
/// method) tells the quota what it did.
macro_rules! counted {
    ($caller:ident, $count:path, $real:expr) => {{
        let errno = $real;
        if errno == 0 {
            $count(&mut $caller.data_mut().quota);
        }
        Ok(errno)
    }};
}

/// Replaces the preview-1 calls that write, create or open with checked versions, and those
/// that close, remove, rename or resize with counted ones. Call after the WASI functions were
/// added.
pub(super) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    type Ctx<'a> = Caller<'a, TaskState>;
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        WASI,
        "fd_write",
        |mut caller: Ctx<'_>, (fd, iovs, iovs_len, nwritten): (i32, i32, i32, i32)| {
            Box::new(async move {
                checked_write!(caller, fd, iovs, iovs_len, nwritten, {
                    real_call!(caller, fd_write(fd, iovs, iovs_len, nwritten))
                })
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "fd_pwrite",
        |mut caller: Ctx<'_>, (fd, iovs, iovs_len, offset, nwritten): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                checked_write!(caller, fd, iovs, iovs_len, nwritten, {
                    real_call!(caller, fd_pwrite(fd, iovs, iovs_len, offset, nwritten))
                })
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_open",
        |mut caller: Ctx<'_>,
         (dirfd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i64,
            i64,
            i32,
            i32,
        )| {
            Box::new(async move {
                let quota = &mut caller.data_mut().quota;
                if quota.open >= MAX_OPEN_FILES {
                    return Ok(Errno::Mfile as i32);
                }
                let creates = oflags & O_CREAT != 0;
                if creates && !quota.allow_entry() {
                    return Ok(Errno::Dquot as i32);
                }
                quota.touched |= creates;
                let errno = real_call!(
                    caller,
                    path_open(
                        dirfd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened
                    )
                );
                if errno == 0 {
                    let quota = &mut caller.data_mut().quota;
                    quota.open += 1;
                    // Opening an existing file with O_CREAT counts too; a recount near the limit
                    // gives it back.
                    if creates {
                        quota.created(oflags & O_EXCL != 0);
                    }
                    quota.bytes_stale |= oflags & O_TRUNC != 0;
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(WASI, "fd_close", |mut caller: Ctx<'_>, (fd,): (i32,)| {
        Box::new(async move { counted!(caller, Quota::closed, real_call!(caller, fd_close(fd))) })
    })?;
    // `to` is closed and `from` takes its place: one descriptor fewer.
    linker.func_wrap_async(
        WASI,
        "fd_renumber",
        |mut caller: Ctx<'_>, (from, to): (i32, i32)| {
            Box::new(async move {
                counted!(
                    caller,
                    Quota::closed,
                    real_call!(caller, fd_renumber(from, to))
                )
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_create_directory",
        |mut caller: Ctx<'_>, (dirfd, path, path_len): (i32, i32, i32)| {
            Box::new(async move {
                checked_creation!(
                    caller,
                    real_call!(caller, path_create_directory(dirfd, path, path_len))
                )
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_symlink",
        |mut caller: Ctx<'_>, (old, old_len, dirfd, new, new_len): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                checked_creation!(
                    caller,
                    real_call!(caller, path_symlink(old, old_len, dirfd, new, new_len))
                )
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_link",
        |mut caller: Ctx<'_>,
         (old_fd, flags, old, old_len, new_fd, new, new_len): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                checked_creation!(
                    caller,
                    real_call!(
                        caller,
                        path_link(old_fd, flags, old, old_len, new_fd, new, new_len)
                    )
                )
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_unlink_file",
        |mut caller: Ctx<'_>, (dirfd, path, path_len): (i32, i32, i32)| {
            Box::new(async move {
                counted!(
                    caller,
                    Quota::removed,
                    real_call!(caller, path_unlink_file(dirfd, path, path_len))
                )
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_remove_directory",
        |mut caller: Ctx<'_>, (dirfd, path, path_len): (i32, i32, i32)| {
            Box::new(async move {
                counted!(
                    caller,
                    Quota::removed,
                    real_call!(caller, path_remove_directory(dirfd, path, path_len))
                )
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_rename",
        |mut caller: Ctx<'_>,
         (fd, old, old_len, new_fd, new, new_len): (i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                counted!(
                    caller,
                    Quota::renamed,
                    real_call!(caller, path_rename(fd, old, old_len, new_fd, new, new_len))
                )
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "fd_filestat_set_size",
        |mut caller: Ctx<'_>, (fd, size): (i32, i64)| {
            Box::new(async move {
                counted!(
                    caller,
                    Quota::resized,
                    real_call!(caller, fd_filestat_set_size(fd, size))
                )
            })
        },
    )?;
    // wasmtime-wasi charges a poll the guest bytes of its two arrays (80 per subscription),
    // but builds a pollable and a table entry for each subscription besides: 500,000 clock
    // subscriptions took a worker to 405 MB for a 64 MiB guest. Charged what it really costs,
    // a poll the guest's limit cannot pay for fails as an allocation would.
    linker.func_wrap_async(
        WASI,
        "poll_oneoff",
        |mut caller: Ctx<'_>, (subs, events, count, nevents): (i32, i32, i32, i32)| {
            Box::new(async move {
                let host_bytes = u64::from(count as u32) * HOST_BYTES_PER_SUBSCRIPTION;
                if host_bytes > caller.as_context_mut().hostcall_fuel() as u64 {
                    return Ok(Errno::Nomem as i32);
                }
                Ok(real_call!(
                    caller,
                    poll_oneoff(subs, events, count, nevents)
                ))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Whether the bytes an `fd_write` or `fd_pwrite` asks to write fit the quota. An iovec list
/// that cannot be read is let through: the real call refuses it with its own error.
fn allow_write(caller: &mut Caller<'_, TaskState>, iovs: i32, iovs_len: i32) -> bool {
    let Some(requested) = requested_bytes(caller, iovs, iovs_len) else {
        return true;
    };
    caller.data_mut().quota.allow_bytes(requested)
}

/// The sum of the lengths in a guest's iovec list (8 bytes each: pointer, length).
fn requested_bytes(caller: &mut Caller<'_, TaskState>, iovs: i32, iovs_len: i32) -> Option<u64> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return None;
    };
    let data = memory.data(&caller);
    let start = iovs as u32 as usize;
    let len = (iovs_len as u32 as usize).checked_mul(8)?;
    let list = data.get(start..start.checked_add(len)?)?;
    Some(
        list.chunks_exact(8)
            .map(|iov| u64::from(u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]])))
            .sum(),
    )
}

/// Adds the bytes a successful write reports to the quota.
fn count_written(caller: &mut Caller<'_, TaskState>, nwritten: i32) {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return;
    };
    let at = nwritten as u32 as usize;
    let written = memory
        .data(&caller)
        .get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    caller.data_mut().quota.wrote(written.into());
}

#[cfg(test)]
mod tests;
