//! Errors with no caller to return to: the loop's exception handler (asyncio's
//! `set_exception_handler`) and debug mode (`set_debug`).

use std::ffi::c_void;

use super::convert::*;
use super::panic::guard_loop;
use crate::abi::*;
use crate::callback::Handler;
use crate::callback::Owned;

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
