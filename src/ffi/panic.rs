//! The panic boundary: no panic ever unwinds into C.
//!
//! Every exported function runs its body through [`guard`], which turns a panic (an afut
//! bug) into the function's neutral value (`AFUT_ERR_PANIC`, NULL, false, 0) after one line
//! on stderr. A panic in a loop function also poisons that loop.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::runtime::eventloop::Loop;

pub(crate) fn guard<R>(name: &str, on_panic: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            eprintln!("afut: internal error in {name}: {what} (this is a bug in afut; please report it)");
            on_panic
        }
    }
}

/// [`guard`] for a function on a loop: a panic also poisons the loop.
pub(crate) fn guard_loop<R>(name: &str, event_loop: &Loop, on_panic: R, body: impl FnOnce() -> R) -> R {
    let mut panicked = true;
    let r = guard(name, on_panic, || {
        let r = body();
        panicked = false;
        r
    });
    if panicked {
        event_loop.poison();
    }
    r
}
