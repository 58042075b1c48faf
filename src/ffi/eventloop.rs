//! Exported loop functions (`afut_loop_*`).

use std::ffi::c_void;

use super::convert::*;
use super::panic::{guard, guard_loop};
use crate::abi::*;
use crate::callback::Handler;
use crate::callback::{Callback, Hook, Owned};
use crate::clock;
use crate::futures::future::Future;
use crate::runtime::eventloop::Loop;
use crate::runtime::handles::Handle;
use crate::tasks::chain;

/// Creates an event loop (asyncio `new_event_loop()`).
///
/// Thread: any; the loop then belongs to whichever thread runs it (see "Threading model").
/// Ownership: the caller owns the loop and releases it with `afut_loop_free`.
/// Returns: NULL with `errno` set if the kernel refused its file descriptors.
#[unsafe(no_mangle)]
pub extern "C" fn afut_loop_new() -> *mut afut_loop_t {
    guard("afut_loop_new", std::ptr::null_mut(), || match Loop::new() {
        Ok(l) => loop_into_raw(l),
        Err(e) => {
            set_errno(e.raw_os_error().unwrap_or(libc::ENOMEM));
            std::ptr::null_mut()
        }
    })
}

/// Closes the loop if needed (see `afut_loop_close`), releases its exception handler and
/// wakeup hook (their `userdata_free` runs), and gives up the caller's reference. Futures
/// bound to the loop may outlive it: completing them still works (their callbacks are dropped),
/// `afut_get_loop` returns NULL for them, and their reports go to stderr. The loop's fd stays
/// open until the last such future is freed.
///
/// Thread: the loop's thread. Called while the loop runs (from one of its callbacks) it does
/// nothing but report the misuse on stderr.
/// Bad input: NULL is a no-op.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_free(r#loop: *mut afut_loop_t) {
    guard("afut_loop_free", (), || {
        // SAFETY: NULL or a live loop (API contract).
        let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return };
        if l.release() {
            // SAFETY: live, and the owner gives up its reference here.
            drop(unsafe { loop_from_raw(r#loop) });
        }
    })
}

/// Closes the loop (asyncio `close()`): every queued callback and timer is dropped, each
/// `userdata_free` called once, and every task still pending ends CANCELLED (see
/// `afut_task_new`); afterwards nothing can be scheduled (`AFUT_ERR_LOOP_CLOSED`, or 0 for the
/// `call_*` functions) and the `run_*` functions return `AFUT_ERR_LOOP_CLOSED`. Idempotent.
///
/// Thread: the loop's thread.
/// Returns: `AFUT_OK`; `AFUT_ERR_LOOP_RUNNING` while the loop runs (from a callback or from
/// another thread).
/// Bad input: NULL returns `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_close(r#loop: *mut afut_loop_t) -> afut_status_t {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return AFUT_ERR_INVALID_ARGUMENT };
    guard_loop("afut_loop_close", &l, AFUT_ERR_PANIC, || l.close())
}

/// True while a `run_*` call is executing the loop (on whichever thread).
///
/// Thread: any. Bad input: NULL returns false.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_is_running(r#loop: *const afut_loop_t) -> bool {
    // SAFETY: NULL or a live loop (API contract).
    guard("afut_loop_is_running", false, || unsafe { borrow_loop(r#loop) }.is_some_and(|l| l.is_running()))
}

/// True once the loop was closed.
///
/// Thread: any. Bad input: NULL returns false.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_is_closed(r#loop: *const afut_loop_t) -> bool {
    // SAFETY: NULL or a live loop (API contract).
    guard("afut_loop_is_closed", false, || unsafe { borrow_loop(r#loop) }.is_some_and(|l| l.is_closed()))
}

/// The loop's clock (asyncio `loop.time()`): monotonic seconds, the time base of
/// `afut_loop_call_at`.
///
/// Thread: any. Bad input: NULL returns NaN.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_time(r#loop: *const afut_loop_t) -> f64 {
    guard("afut_loop_time", f64::NAN, || if r#loop.is_null() { f64::NAN } else { clock::now() })
}

/// Runs the loop until `fut` is done (asyncio `run_until_complete`). A loop-less `fut` is
/// wrapped first (`afut_wrap_future`). The run ends at the end of the iteration in which `fut`'s
/// done-callbacks ran. If `fut` is already done by the time its own done-callback runs, the
/// stop that callback requests belongs to this run only: unlike asyncio, where such a stale
/// stop ends the next run after one iteration, afut makes it inert.
///
/// Ownership: the run holds its own reference to `fut` until it returns, so a callback may
/// drop the caller's last one meanwhile.
/// Thread: the loop's thread (any thread while the loop is not running).
/// Returns: the outcome: `AFUT_OK` (read the value with `afut_result`), `AFUT_ERR_EXCEPTION`
/// (which counts as retrieving it), `AFUT_ERR_CANCELLED`; `AFUT_ERR_INVALID_STATE` if
/// `afut_loop_stop` ended the run before `fut` was done; `AFUT_ERR_LOOP_RUNNING` if the loop is
/// already running (also from inside a callback); `AFUT_ERR_LOOP_CLOSED`; `AFUT_ERR_PANIC` on a
/// poisoned loop.
/// Bad input: NULL `loop` or `fut`, or a `fut` bound to another loop, returns
/// `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_run_until_complete(r#loop: *mut afut_loop_t, fut: *mut afut_t) -> afut_status_t {
    // SAFETY: NULL or live handles (API contract).
    let (Some(l), Some(f)) = (unsafe { borrow_loop(r#loop) }, unsafe { borrow_future_to_keep(fut) }) else {
        return AFUT_ERR_INVALID_ARGUMENT;
    };
    guard_loop("afut_loop_run_until_complete", &l, AFUT_ERR_PANIC, || {
        // The run holds its own reference, as asyncio's does: a callback may drop the caller's
        // last one while the loop runs.
        let f: Future = (*f).clone();
        if f.event_loop().is_none() {
            let wrapper = chain::wrap_future(&l, &f);
            let status = l.run_until_complete(&wrapper);
            if status == AFUT_ERR_EXCEPTION {
                // Retrieving the wrapper's copy retrieves the original too.
                let _ = f.result();
            }
            return status;
        }
        l.run_until_complete(&f)
    })
}

/// Runs the loop until `afut_loop_stop` (asyncio `run_forever`). A stop requested before the
/// call makes it run exactly one iteration.
///
/// Thread: the loop's thread (any thread while the loop is not running).
/// Returns: `AFUT_OK` after a stop; `AFUT_ERR_LOOP_RUNNING`; `AFUT_ERR_LOOP_CLOSED`;
/// `AFUT_ERR_PANIC` on a poisoned loop.
/// Bad input: NULL returns `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_run_forever(r#loop: *mut afut_loop_t) -> afut_status_t {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return AFUT_ERR_INVALID_ARGUMENT };
    guard_loop("afut_loop_run_forever", &l, AFUT_ERR_PANIC, || l.run_forever())
}

/// Asks the running loop to stop (asyncio `stop()`): the current batch of callbacks finishes,
/// then `run_forever` / `run_until_complete` return; what that batch scheduled runs on the next
/// run. A stop requested while the loop is not running applies to its next run (one iteration).
/// `afut_loop_run_once` ignores it.
///
/// Thread: any; from another thread it also wakes the loop.
/// Bad input: NULL is a no-op.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_stop(r#loop: *mut afut_loop_t) {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return };
    guard_loop("afut_loop_stop", &l, (), || l.stop())
}

fn schedule(
    name: &str,
    r#loop: *mut afut_loop_t,
    when: Option<f64>,
    cb: afut_callback_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> afut_handle_t {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return 0 };
    let Some(cb) = cb else { return 0 };
    if when.is_some_and(f64::is_nan) {
        return 0;
    }
    guard_loop(name, &l, 0, || match l.schedule(Callback::c(cb, Owned::new(userdata, userdata_free)), when) {
        Ok(h) => h,
        Err((_, cb)) => {
            cb.disarm();
            0
        }
    })
}

/// Schedules `cb(userdata)` to run in the loop's next iteration (asyncio `call_soon`).
/// Callbacks run in the order they were scheduled; one scheduled while a batch runs waits for
/// the next iteration. Called from a thread other than the one running the loop, it wakes the
/// loop (asyncio's `call_soon_threadsafe`, done for you).
///
/// Thread: any.
/// Ownership: on success the library owns `userdata` and calls `userdata_free(userdata)` (if not
/// NULL) exactly once: after `cb` ran, or when it is cancelled, or dropped by `afut_loop_close`.
/// On failure (0) it stays the caller's and nothing is freed.
/// Returns: a handle for `afut_loop_cancel`; 0 if the loop is closed.
/// Bad input: NULL `loop` or `cb` returns 0.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `cb` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_call_soon(
    r#loop: *mut afut_loop_t,
    cb: afut_callback_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> afut_handle_t {
    schedule("afut_loop_call_soon", r#loop, None, cb, userdata, userdata_free)
}

/// Exactly `afut_loop_call_soon` (every afut scheduling function is thread-safe); kept for
/// asyncio's name. A closed loop is refused atomically: 0, and `userdata` stays the caller's.
///
/// Thread: any. Ownership and bad input: as `afut_loop_call_soon`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `cb` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_call_soon_threadsafe(
    r#loop: *mut afut_loop_t,
    cb: afut_callback_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> afut_handle_t {
    schedule("afut_loop_call_soon_threadsafe", r#loop, None, cb, userdata, userdata_free)
}

/// Schedules `cb(userdata)` after `delay_s` seconds (asyncio `call_later`). A delay <= 0 is due
/// at once (in deadline order with other due timers); `INFINITY` never fires. Timers with equal
/// deadlines run in the order they were scheduled. Due timers run after the callbacks already
/// ready in the same iteration.
///
/// Thread: any. Ownership: as `afut_loop_call_soon`.
/// Returns: a handle; 0 if the loop is closed.
/// Bad input: NULL `loop` or `cb`, or NaN `delay_s`, returns 0.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `cb` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_call_later(
    r#loop: *mut afut_loop_t,
    delay_s: f64,
    cb: afut_callback_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> afut_handle_t {
    let when = if delay_s.is_nan() { f64::NAN } else { clock::now() + delay_s };
    schedule("afut_loop_call_later", r#loop, Some(when), cb, userdata, userdata_free)
}

/// Schedules `cb(userdata)` at `when` on the loop's clock (`afut_loop_time`) (asyncio
/// `call_at`). A past `when` is due at once.
///
/// Thread: any. Ownership: as `afut_loop_call_soon`.
/// Returns: a handle; 0 if the loop is closed.
/// Bad input: NULL `loop` or `cb`, or NaN `when`, returns 0.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `cb` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_call_at(
    r#loop: *mut afut_loop_t,
    when: f64,
    cb: afut_callback_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) -> afut_handle_t {
    schedule("afut_loop_call_at", r#loop, Some(when), cb, userdata, userdata_free)
}

/// Cancels a scheduled callback that has not started (asyncio `Handle.cancel()`); its
/// `userdata_free` runs now, on this thread.
///
/// Thread: any.
/// Returns: true iff this call cancelled it; false for 0, unknown, running, already-run or
/// already-cancelled handles.
/// Bad input: NULL `loop` returns false.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_cancel(r#loop: *mut afut_loop_t, handle: afut_handle_t) -> bool {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return false };
    guard_loop("afut_loop_cancel", &l, false, || handle != 0 && l.cancel(handle as Handle))
}

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
/// thread, started by the first call, raises it when a watched fd is ready.
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
/// rounded up (a host that waits this long finds the timer due: never a busy spin).
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

/// Installs the handler for errors that have no caller to return to (asyncio
/// `set_exception_handler`). NULL `handler` restores the default, which writes to stderr.
/// The handler runs on the thread where the error happened: the loop's thread for callback
/// reports, the thread dropping the last reference for "never retrieved" reports. It may call
/// any afut function.
///
/// Thread: any.
/// Ownership: the library owns `userdata` and calls `userdata_free(userdata)` once when the
/// handler is replaced or the loop freed (after any call in flight returns). With a NULL
/// `handler`, `userdata_free(userdata)` (if any) is called at once.
/// Bad input: NULL `loop` does nothing (and frees nothing).
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `handler` is NULL or a function with the documented signature, callable as this documentation says.
/// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_set_exception_handler(
    r#loop: *mut afut_loop_t,
    handler: afut_exception_handler_fn,
    userdata: *mut c_void,
    userdata_free: afut_free_fn,
) {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return };
    guard_loop("afut_loop_set_exception_handler", &l, (), || {
        let data = Owned::new(userdata, userdata_free);
        l.set_exception_handler(handler.map(|h| Handler::new(h, data)));
    })
}

/// Debug mode (asyncio `set_debug`): also report callbacks that take 0.1 s or more, as
/// "Executing <callback> took 0.123 seconds", through the exception handler. The
/// never-retrieved report is made whatever the mode.
///
/// Thread: any. Bad input: NULL is a no-op.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_set_debug(r#loop: *mut afut_loop_t, enabled: bool) {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return };
    guard_loop("afut_loop_set_debug", &l, (), || l.set_debug(enabled))
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
