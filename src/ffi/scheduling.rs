//! Scheduling callbacks on a loop (asyncio's `call_soon`, `call_soon_threadsafe`, `call_later`,
//! `call_at` and `Handle.cancel`).

use std::ffi::c_void;

use super::convert::*;
use super::panic::guard_loop;
use crate::abi::*;
use crate::callback::{Callback, Owned};
use crate::runtime::handles::Handle;

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
    // SAFETY: NULL or a live loop (API contract).
    let now = unsafe { borrow_loop(r#loop) }.map_or(0.0, |l| l.time());
    let when = if delay_s.is_nan() { f64::NAN } else { now + delay_s };
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
