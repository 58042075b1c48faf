//! Functions on futures (asyncio's `isfuture`, `ensure_future`, `wrap_future`, and `sleep`,
//! which here returns a future).

use std::ffi::c_void;

use super::convert::*;
use super::panic::guard;
use crate::abi::*;
use crate::callback::Owned;
use crate::futures::future::TAG_FUTURE;
use crate::tasks::{chain, sleep};

/// True iff `obj` is a live future or task handle of this library.
///
/// A debugging and binding aid, not a safety guarantee: `obj` must be NULL or point to at
/// least 16 readable bytes. A handle's tag is cleared when it is freed, so a freed handle
/// answers false while its memory is not reused.
///
/// Thread: any. Bad input: NULL returns false.
///
/// # Safety
/// `obj` is NULL or points to at least 16 readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_isfuture(obj: *const c_void) -> bool {
    guard("afut_isfuture", false, || {
        if obj.is_null() {
            return false;
        }
        // SAFETY: the contract says `obj` points to at least 16 readable bytes; an unaligned
        // read of the first 8 is within them.
        let tag = unsafe { std::ptr::read_unaligned(obj as *const u64) };
        tag == TAG_FUTURE
    })
}

/// asyncio `ensure_future` for futures: `obj` itself (as a new reference) if it is bound to
/// `loop`, else `afut_wrap_future(loop, obj)`.
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller.
/// Bad input: NULL `loop` or `obj` returns NULL.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `obj` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_ensure_future(r#loop: *mut afut_loop_t, obj: *mut afut_t) -> *mut afut_t {
    guard("afut_ensure_future", std::ptr::null_mut(), || {
        // SAFETY: NULL or live handles (API contract).
        let (Some(l), Some(f)) = (unsafe { borrow_loop(r#loop) }, unsafe { borrow_future_to_keep(obj) }) else {
            return std::ptr::null_mut();
        };
        future_into_raw(chain::ensure_future(&l, &f))
    })
}

/// A future bound to `loop` that mirrors `other` (a loop-less future or one of another loop;
/// for a future of `loop` itself, `other` is returned as a new reference). When `other` is
/// done, its outcome is copied onto the wrapper in a later iteration of `loop` (even if it was
/// done already); cancelling either side cancels the other (asyncio `_chain_future`), the
/// cancel message included.
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller. The mirrored value or detail is
/// borrowed from `other`, which the wrapper keeps a reference to until it is freed. `other`
/// holds the wrapper until `other` is done (asyncio's chain does too), so a wrapper the caller
/// released still completes and runs its done-callbacks; if `other` never completes, closing
/// `loop` lets the wrapper go.
/// Bad input: NULL `loop` or `other` returns NULL.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `other` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_wrap_future(r#loop: *mut afut_loop_t, other: *mut afut_t) -> *mut afut_t {
    guard("afut_wrap_future", std::ptr::null_mut(), || {
        // SAFETY: NULL or live handles (API contract).
        let (Some(l), Some(f)) = (unsafe { borrow_loop(r#loop) }, unsafe { borrow_future_to_keep(other) }) else {
            return std::ptr::null_mut();
        };
        future_into_raw(chain::wrap_future(&l, &f))
    })
}

/// A future of `loop` that a timer completes with `value` after `delay_s` seconds (asyncio
/// `sleep(delay, result)`). `delay_s <= 0` completes it after exactly one iteration;
/// `INFINITY` never. Cancelling the future cancels the timer.
///
/// Thread: any.
/// Ownership: returns a new reference owned by the caller. On success the library owns
/// `value`: once the timer completes the future, the future owns it (and frees it when it is
/// freed). If the future is cancelled first, the timer is cancelled on the loop's next
/// iteration and `value_free(value)` runs then; if the loop closes first, at the close.
/// On failure `value` stays the caller's. The loop holds a reference to the future until that
/// next iteration, so its last `afut_unref` may come one iteration after yours.
/// Bad input: NULL `loop` or NaN `delay_s` returns NULL; so does a closed loop.
///
/// # Safety
/// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
/// `value_free` is NULL or a function with the documented signature, callable as this documentation says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn afut_sleep(
    r#loop: *mut afut_loop_t,
    delay_s: f64,
    value: *mut c_void,
    value_free: afut_free_fn,
) -> *mut afut_t {
    guard("afut_sleep", std::ptr::null_mut(), || {
        // SAFETY: NULL or a live loop (API contract).
        let Some(l) = (unsafe { borrow_loop(r#loop) }) else { return std::ptr::null_mut() };
        match sleep::sleep(&l, delay_s, Owned::new(value, value_free)) {
            Ok(f) => future_into_raw(f),
            Err((_, v)) => {
                v.disarm();
                std::ptr::null_mut()
            }
        }
    })
}
