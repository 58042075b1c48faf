//! Virtual time, for tests of code that waits (`afut_loop_set_virtual_clock`,
//! `afut_loop_advance_time`).

use super::convert::*;
use super::panic::guard_loop;
use crate::abi::*;

/// Switches the loop to a virtual clock, for tests of code that waits (asyncio's
/// `test_utils.TestLoop`, tokio's `time::pause`, trio's `MockClock`). `afut_loop_time` is then
/// 0 and moves only by `afut_loop_advance_time`, or, with `auto_advance`, by jumps: whenever an
/// iteration finds nothing ready (work queued from other threads included), no timer due, and
/// the loop not stopping, the clock jumps exactly to the earliest live deadline (never to
/// `INFINITY`) and that timer runs in the same iteration. This also holds for
/// `afut_loop_run_once(loop, 0, ...)`. A job of `afut_loop_run_in_executor` holds the clock
/// until it is done: the loop waits for it instead of jumping. Without a timer to jump to, an
/// idle loop blocks until another thread submits work (no spinning); a timer scheduled from
/// another thread wakes it.
///
/// Everything that takes a delay follows the virtual clock: `afut_loop_call_later`, `afut_sleep`,
/// the timeouts of `afut_wait_for`, `afut_wait_many`, `afut_as_completed`, and debug mode's
/// slow-callback report (callbacks are timed in loop time, as asyncio does: a callback that
/// advances the clock by 0.2 s is slow; one that blocks 0.2 s of real time is not).
/// `afut_wait` (a thread blocking on a future) keeps waiting in real time.
///
/// Host mode (`afut_loop_fd`): the fd becomes readable for a virtual timer only once it is due
/// (after `afut_loop_advance_time`, or scheduled at or before the current time). The timerfd is
/// never armed. `afut_loop_timeout_ms` returns 0 if work is ready or a timer is due; with
/// `auto_advance`, also 0 while a live finite timer is pending and no executor job holds the
/// clock (the host's next `run_once` jumps to it; the fd is not readable for it); otherwise -1
/// (waiting in real time would never make a virtual timer due).
///
/// Called again (with no timer), it only changes `auto_advance`; the clock keeps its value.
///
/// Thread: the loop's thread: from inside a callback, or any one thread while the loop is not
/// running; from another thread while it runs: `AFUT_ERR_WRONG_THREAD`.
/// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` while a timer exists (`call_later`, `call_at`, a
/// pending `afut_sleep`, a timeout of a pending `wait_for` / `wait_many` / `as_completed`; a
/// cancelled timer does not count); `AFUT_ERR_LOOP_CLOSED` on a closed loop.
/// Bad input: NULL returns `AFUT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_set_virtual_clock(r#loop: *mut afut_loop_t, auto_advance: bool) -> afut_status_t {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return AFUT_ERR_INVALID_ARGUMENT };
    guard_loop("afut_loop_set_virtual_clock", &l, AFUT_ERR_PANIC, || l.set_virtual_clock(auto_advance))
}

/// Moves a virtual clock (`afut_loop_set_virtual_clock`) forward by `seconds`. Every timer due
/// then (a deadline equal to the clock is due) runs in the loop's next single iteration, in
/// deadline order; a loop or host waiting on another thread is woken for them.
///
/// Thread: any, a callback of the loop included.
/// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` on a loop with a real clock;
/// `AFUT_ERR_LOOP_CLOSED` on a closed loop.
/// Bad input: NULL `loop`, or `seconds` negative, NaN or infinite, returns
/// `AFUT_ERR_INVALID_ARGUMENT` (checked first) and changes nothing; so does an amount that
/// would take the clock past `DBL_MAX`.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_loop_advance_time(r#loop: *mut afut_loop_t, seconds: f64) -> afut_status_t {
    // SAFETY: NULL or a live loop (API contract).
    let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return AFUT_ERR_INVALID_ARGUMENT };
    guard_loop("afut_loop_advance_time", &l, AFUT_ERR_PANIC, || l.advance_time(seconds))
}
