//! Host integration: running a loop inside another event loop through one pollable fd, a
//! timeout and a non-blocking iteration, or through a wakeup hook.

use std::ffi::c_void;

use super::convert::*;
use super::panic::guard_loop;
use crate::abi::*;
use crate::callback::{Hook, Owned};

/// The loop's pollable fd, for hosts that own the wait (epoll, poll, libuv, GLib, asyncio).
///
/// It is readable (level-triggered) whenever `afut_loop_run_once(loop, 0, ...)` has work,
/// due timers and ready watched fds (`afut_loop_add_reader` / `add_writer`) included, and not
/// readable when the loop is idle. After a `run_once` that leaves work pending (or a watched fd
/// still ready), the library makes it readable anew, so edge-triggered hosts that call
/// `run_once` once per event never stall. The same fd is returned for the loop's life; do not
/// close it or read from it. The first call switches the loop to host mode, in which it keeps
/// the fd exact.
///
/// Timers: on Linux a timerfd behind this fd tracks the next deadline, so the fd alone covers
/// timers. Other platforms have no pollable timer: there the host must also wait no longer
/// than `afut_loop_timeout_ms` (which every host should do anyway). On a platform whose poller
/// has no fd of its own (the `poll()` fallback), the fd is the loop's wakeup pipe, and a helper
/// thread, started by the first call, raises it when a watched fd is ready or a timer comes
/// due; there a timer cancelled after it came due but before the next `run_once` leaves the
/// fd readable until that `run_once`, which runs nothing (the one exception to "not readable
/// when idle"; epoll, kqueue and event ports have none). On a virtual clock
/// (`afut_loop_set_virtual_clock`) a timer makes the fd readable once it is due; an
/// auto-advance jump is announced by `afut_loop_timeout_ms` instead.
///
/// Thread: any.
/// Returns: the fd; -1 with `errno` = EINVAL for a NULL loop.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_fd(r#loop: *mut afut_loop_t) -> libc::c_int {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    guard_loop("afut_loop_fd", &l, -1, || l.fd())
}

/// How long a host may wait before calling `afut_loop_run_once`: -1 if nothing is scheduled
/// (wait for the fd alone), 0 if work is ready now, else the milliseconds until the next timer,
/// rounded up (a host that waits this long finds the timer due: never a busy spin). On a
/// virtual clock: 0 if a timer is due, or, with auto-advance, while a finite timer is pending
/// and no executor job holds the clock; else -1 (see `afut_loop_set_virtual_clock`).
///
/// Thread: any.
/// Bad input: NULL returns -1; so does a closed loop.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_timeout_ms(r#loop: *const afut_loop_t) -> libc::c_int {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return -1 };
    guard_loop("afut_loop_timeout_ms", &l, -1, || l.timeout_ms())
}

/// Runs one iteration: waits up to `timeout_ms` for work (0: no wait, -1: until there is
/// some), then runs the due timers and the callbacks that were ready at its start; callbacks
/// they schedule run in the next iteration. `afut_loop_is_running` is true during the call.
///
/// Thread: the loop's thread (any thread while the loop is not running).
/// Returns: `AFUT_OK` and, in `*ran_out` (may be NULL), how many callbacks and timers ran
/// (cancelled ones not counted); `AFUT_ERR_LOOP_RUNNING` (also from inside a callback);
/// `AFUT_ERR_LOOP_CLOSED`; `AFUT_ERR_PANIC` on a poisoned loop. `*ran_out` is written only on
/// `AFUT_OK`.
/// Bad input: NULL `loop` returns `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `ran_out` is NULL or valid for one write of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_run_once(
    r#loop: *mut afut_loop_t,
    timeout_ms: libc::c_int,
    ran_out: *mut usize,
) -> afut_status_t {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return AFUT_ERR_INVALID_ARGUMENT };
    guard_loop("afut_loop_run_once", &l, AFUT_ERR_PANIC, || match l.run_once(timeout_ms) {
        Ok(n) => {
            if !ran_out.is_null() {
                // SAFETY: a non-NULL `ran_out` points to a writable size_t (contract).
                unsafe { ran_out.write(n) };
            }
            AFUT_OK
        }
        Err(s) => s,
    })
}

/// For hosts with no fd to poll (a GUI message loop, another language's runtime): `wakeup`
/// is called whenever the loop goes from idle to having work, coalesced like the fd (several
/// submissions before the next `run_once` may give one call), on the submitting thread, or on
/// the loop's thread at the end of a `run_once` that leaves work. It must not call afut except
/// the thread-safe functions; typically it posts a message that makes the host call
/// `afut_loop_run_once(loop, 0, NULL)`. Timers do not call it: the host also waits no longer
/// than `afut_loop_timeout_ms`. Watched fds (`afut_loop_add_reader` / `add_writer`) do not
/// call it either: a host that uses watchers must also poll `afut_loop_fd`. NULL `wakeup`
/// removes the hook.
///
/// Thread: any.
/// Ownership: `userdata_free(userdata)` is called once when the hook is replaced or the loop
/// freed (at once for a NULL `wakeup`).
/// Bad input: NULL `loop` does nothing (and frees nothing).
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `wakeup` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_set_wakeup_fn(
    r#loop: *mut afut_loop_t,
    wakeup: afut_callback_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return };
    guard_loop("afut_loop_set_wakeup_fn", &l, (), || {
        let data = Owned::new(userdata, userdata_free);
        l.set_wakeup_hook(wakeup.map(|w| Hook::new(w, data)));
    })
}

/// Gives a loop inherited through `fork()` kernel objects of its own, in the child (libuv's
/// `uv_loop_fork`). After `fork()` the parent and the child share the loop's poller, its
/// wakeup signal and its timer fd: the child could consume the parent's timer expiry or
/// wakeups, and leave the parent's host fd silent. Call this in the child before it uses the
/// loop again: fresh objects are put behind the same fd numbers (so `afut_loop_fd` keeps its
/// value), watched fds are registered anew, the timer is re-armed for the next deadline, and
/// the fd is made readable if work is ready. The parent needs nothing.
///
/// Everything else is inherited as `fork()` copies memory: futures, callbacks, timers and
/// watchers. The usual rule of forking a multi-threaded process applies: only the calling
/// thread exists in the child, so a loop the parent ran on another thread, or futures other
/// threads were completing, must not be used in the child.
///
/// Thread: the child's only thread, while the loop is not running.
/// Returns: `AFUT_OK`; `AFUT_ERR_LOOP_RUNNING` from inside a callback of the loop;
/// `AFUT_ERR_LOOP_CLOSED`; `AFUT_ERR_OS` with `errno` set if a system call failed, or with
/// `errno` = `ENOTSUP` where the poller is not a kernel object the loop can renew (only the
/// Linux epoll backend supports this today; elsewhere create a new loop in the child).
/// Bad input: NULL returns `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_fork(r#loop: *mut afut_loop_t) -> afut_status_t {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return AFUT_ERR_INVALID_ARGUMENT };
    guard_loop("afut_loop_fork", &l, AFUT_ERR_PANIC, || {
        if l.is_running() {
            return AFUT_ERR_LOOP_RUNNING;
        }
        if l.is_closed() {
            return AFUT_ERR_LOOP_CLOSED;
        }
        match l.renew_after_fork() {
            Ok(()) => AFUT_OK,
            Err(e) => {
                set_errno(e.raw_os_error().unwrap_or(libc::ENOTSUP));
                AFUT_ERR_OS
            }
        }
    })
}
