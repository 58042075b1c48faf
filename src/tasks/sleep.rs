//! `afut_sleep`: a future that a timer completes with a given value.
//!
//! `delay <= 0` uses `call_soon`, so the future is done after exactly one iteration
//! (asyncio's `sleep(0)`, SEMANTICS.md SL1). Cancelling the future cancels its timer on the
//! next iteration, which frees the value (it was never delivered).

use crate::abi::*;
use crate::callback::{Callback, Owned};
use crate::futures::done::next_token;
use crate::futures::future::{DoneCb, Future};
use crate::runtime::eventloop::Loop;

pub(crate) fn sleep(event_loop: &Loop, delay_s: f64, value: Owned) -> Result<Future, (afut_status_t, Owned)> {
    if delay_s.is_nan() {
        return Err((AFUT_ERR_INVALID_ARGUMENT, value));
    }
    let fut = Future::new(Some(event_loop.link()));
    let target = fut.clone();
    // The value travels in a slot so that a refused schedule can give it back.
    let slot = std::sync::Arc::new(crate::lock::Mutex::new(Some(value)));
    let timer_slot = slot.clone();
    let fire = Callback::rust(move || {
        // Taken in its own statement: the slot's lock is released before the future's is
        // taken, and before a refused value's `value_free` runs.
        let value = timer_slot.lock().take();
        if let Some(v) = value {
            // Refused if the future was cancelled meanwhile: the value is freed here.
            let _ = target.set_result(v);
        }
    });
    let when = if delay_s <= 0.0 { None } else { Some(event_loop.time() + delay_s) };
    let handle = match event_loop.schedule(fire, when) {
        Ok(h) => h,
        Err((status, cb)) => {
            drop(cb);
            let value = slot.lock().take().expect("the value was not delivered");
            return Err((status, value));
        }
    };
    let timer_loop = event_loop.clone();
    let cancel_timer = DoneCb::rust(next_token(), move |f: &Future| {
        if f.is_cancelled() {
            timer_loop.cancel(handle);
        }
    });
    // Cannot fail: the future is pending.
    let _ = fut.add_done_callback(cancel_timer);
    Ok(fut)
}
