//! Exported fd watchers (`afut_loop_add_reader` / `add_writer` / `remove_reader` /
//! `remove_writer`).

use std::ffi::c_void;

use super::convert::*;
use super::panic::guard_loop;
use crate::abi::*;
use crate::callback::Owned;
use crate::runtime::watchers::Kind;

fn add(
    name: &str,
    r#loop: *mut afut_loop_t,
    fd: libc::c_int,
    kind: Kind,
    cb: afut_callback_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> afut_status_t {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return AFUT_ERR_INVALID_ARGUMENT };
    let Some(cb) = cb else { return AFUT_ERR_INVALID_ARGUMENT };
    guard_loop(name, &l, AFUT_ERR_PANIC, || match l.add_watcher(fd, kind, cb, Owned::new(userdata, userdata_free)) {
        Ok(()) => AFUT_OK,
        Err(e) => {
            e.data.disarm(); // refused: the userdata stays the caller's
            if e.status == AFUT_ERR_OS {
                set_errno(e.errno);
            }
            e.status
        }
    })
}

fn remove(name: &str, r#loop: *mut afut_loop_t, fd: libc::c_int, kind: Kind) -> bool {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return false };
    guard_loop(name, &l, false, || l.remove_watcher(fd, kind))
}

/// Watches `fd` for reading (asyncio `loop.add_reader`): `cb(userdata)` runs on the loop's
/// thread, through its ready queue, once in every iteration in which `fd` is readable, until
/// the reader is removed (level-triggered, as asyncio's). A hangup, an EOF or an error on `fd`
/// counts as readable. An fd found ready runs its reader in the same iteration (the same
/// `afut_loop_run_once`): after the callbacks that were already ready, before the timers that
/// came due, and, for one fd, before its writer.
///
/// One reader per fd: adding again replaces the reader, and the old one's `userdata_free` runs
/// once (see Ownership). A reader and a writer of the same fd are independent. A callback may
/// add or remove any watcher, its own included; removing or replacing a watcher whose callback
/// is already queued for this iteration cancels that call (asyncio's `handle.cancel()`), and a
/// watcher added during an iteration runs from the next one on. Called from another thread,
/// the registration wakes the loop if `fd` is ready (also a host's `afut_loop_fd`).
///
/// What can be watched: sockets, pipes, FIFOs, terminals, eventfds, signalfds, and any fd the
/// platform's poller accepts. Regular files and directories are refused on every platform
/// (`AFUT_ERR_OS`, `errno` = EPERM, as Linux's epoll, and so asyncio, refuses them), since
/// they are always "ready". Watch the fd, not the file: close an fd only after removing its
/// watchers (removing after the close still works and frees the userdata).
///
/// Thread: any, a callback included.
/// Ownership: on `AFUT_OK` the library owns `userdata` and calls `userdata_free(userdata)` (if
/// not NULL) exactly once: when the reader is removed or replaced (during that call, or once
/// the iteration that had its callback queued, or the callback itself, is over: a callback that
/// removes its own watcher may still use its userdata until it returns), or when the loop is
/// closed or freed. On error it stays the caller's, and a reader already registered for `fd`
/// is kept.
/// Returns: `AFUT_OK`; `AFUT_ERR_LOOP_CLOSED`; `AFUT_ERR_OS` with `errno` set when `fd` cannot
/// be watched: EBADF (not open), EPERM (a regular file or a directory), or the poller's own
/// error (for example EINVAL for the loop's own fd on Linux).
/// Bad input: NULL `loop` or `cb`, or a negative `fd`, returns `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `cb` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_add_reader(
    r#loop: *mut afut_loop_t,
    fd: libc::c_int,
    cb: afut_callback_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> afut_status_t {
    add("afut_loop_add_reader", r#loop, fd, Kind::Reader, cb, userdata, userdata_free)
}

/// Watches `fd` for writing (asyncio `loop.add_writer`): `cb(userdata)` runs on the loop's
/// thread once in every iteration in which `fd` is writable (an error counts as writable),
/// until the writer is removed. Everything else is as for `afut_loop_add_reader`: one writer
/// per fd, replaced by a new add; independent of the fd's reader, which runs first when both
/// are ready.
///
/// Thread: any, a callback included.
/// Ownership: as `afut_loop_add_reader`.
/// Returns: as `afut_loop_add_reader`.
/// Bad input: NULL `loop` or `cb`, or a negative `fd`, returns `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `cb` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_add_writer(
    r#loop: *mut afut_loop_t,
    fd: libc::c_int,
    cb: afut_callback_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> afut_status_t {
    add("afut_loop_add_writer", r#loop, fd, Kind::Writer, cb, userdata, userdata_free)
}

/// Stops watching `fd` for reading (asyncio `loop.remove_reader`). A call of the reader already
/// queued for this iteration is cancelled; removed from another thread while its callback runs,
/// the callback finishes (and may be starting at that very moment), and its userdata is freed
/// after it returns.
///
/// Thread: any, a callback included (its own reader too).
/// Ownership: the removed reader's `userdata_free(userdata)` runs once: during this call, or
/// once the batch that had it queued (or its running callback) is over.
/// Returns: true iff a reader was removed; false if `fd` had none, or the loop is closed.
/// Bad input: NULL `loop` or a negative `fd` returns false.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_remove_reader(r#loop: *mut afut_loop_t, fd: libc::c_int) -> bool {
    remove("afut_loop_remove_reader", r#loop, fd, Kind::Reader)
}

/// Stops watching `fd` for writing (asyncio `loop.remove_writer`); as `afut_loop_remove_reader`.
///
/// Thread: any, a callback included.
/// Ownership: as `afut_loop_remove_reader`.
/// Returns: true iff a writer was removed; false if `fd` had none, or the loop is closed.
/// Bad input: NULL `loop` or a negative `fd` returns false.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_remove_writer(r#loop: *mut afut_loop_t, fd: libc::c_int) -> bool {
    remove("afut_loop_remove_writer", r#loop, fd, Kind::Writer)
}
