//! The event loop (asyncio's `new_event_loop`, `close`, `run_until_complete`, `run_forever`,
//! `stop`): creating, running, stopping and closing a loop.

use super::convert::*;
use super::panic::{guard, guard_loop};
use crate::abi::*;

use crate::futures::future::Future;
use crate::runtime::eventloop::Loop;
use crate::tasks::chain;

/// Creates an event loop (asyncio `new_event_loop()`).
///
/// Thread: any; the loop then belongs to whichever thread runs it (see "Threading model").
/// Ownership: the caller owns the loop and releases it with `afut_loop_free`.
/// Returns: NULL with `errno` set if the kernel refused one of its file descriptors (the
/// epoll fd, eventfd and timerfd behind `afut_loop_fd`; for example `EMFILE` when the process
/// is out of descriptors). Nothing is leaked then.
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
/// `afut_loop_call_at`; with a virtual clock (`afut_loop_set_virtual_clock`), the virtual time.
///
/// Thread: any. Bad input: NULL returns NaN.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_time(r#loop: *const afut_loop_t) -> f64 {
    // SAFETY: NULL or a live loop (API contract).
    guard("afut_loop_time", f64::NAN, || unsafe { borrow_loop(r#loop) }.map_or(f64::NAN, |l| l.time()))
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
