//! The C data the library stores and calls back: function pointers, userdata pointers and
//! their destructors.
//!
//! afut never dereferences a userdata, value or detail pointer; it only hands it back to C.
//! An [`Owned`] pointer runs its destructor exactly once when dropped, unless the library
//! [`Owned::disarm`]s it to give it back to the caller (a call that failed). All calls into C
//! function pointers live in this module.

use std::ffi::c_void;

use crate::abi::{
    CallbackFn, DoneFn, FreeFn, HandlerFn, JobFn, StepFn, afut_error_context_t, afut_free_fn, afut_loop_t, afut_t,
};
use crate::lock::assert_unlocked;

/// A pointer that belongs to C. The library moves it between threads but never reads it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RawPtr(pub *mut c_void);

// SAFETY: afut only stores and returns the pointer; whatever it points to is used by the
// caller's own callbacks, on the threads the API documents (the contract the caller accepted
// by passing it). The library never dereferences it.
unsafe impl Send for RawPtr {}
// SAFETY: as above; shared references only ever copy the pointer value.
unsafe impl Sync for RawPtr {}

/// A C pointer together with its optional destructor, called exactly once on drop.
pub(crate) struct Owned {
    ptr: RawPtr,
    free: Option<FreeFn>,
}

impl Owned {
    pub(crate) fn new(ptr: *mut c_void, free: afut_free_fn) -> Self {
        Owned { ptr: RawPtr(ptr), free }
    }

    /// A pointer the library does not own (no destructor).
    pub(crate) fn borrowed(ptr: *mut c_void) -> Self {
        Owned { ptr: RawPtr(ptr), free: None }
    }

    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr.0
    }

    /// Gives the pointer back to its caller: the destructor will not run.
    pub(crate) fn disarm(mut self) {
        self.free = None;
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(free) = self.free.take() {
            assert_unlocked("a userdata/value/detail destructor");
            // SAFETY: the caller gave us `free` together with `ptr` as the function that
            // releases it; `take()` guarantees it runs at most once, and drop at least once.
            unsafe { free(self.ptr.0) }
        }
    }
}

/// Something scheduled on a loop with `call_soon` / `call_at`.
pub(crate) enum Callback {
    /// A C function and its userdata (freed after the call, or when dropped unrun).
    C { func: CallbackFn, data: Owned },
    /// Library-internal work.
    Rust(Box<dyn FnOnce() + Send>),
}

impl Callback {
    pub(crate) fn c(func: CallbackFn, data: Owned) -> Self {
        Callback::C { func, data }
    }

    pub(crate) fn rust(f: impl FnOnce() + Send + 'static) -> Self {
        Callback::Rust(Box::new(f))
    }

    pub(crate) fn run(self) {
        match self {
            Callback::C { func, data } => {
                assert_unlocked("a scheduled callback");
                // SAFETY: `func` is the caller's callback, called with the userdata it
                // registered, exactly once, on the loop's thread, with no afut lock held.
                unsafe { func(data.ptr()) };
                drop(data); // userdata_free after the callback ran
            }
            Callback::Rust(f) => f(),
        }
    }

    /// Drops the callback without freeing a C userdata: ownership goes back to the caller.
    pub(crate) fn disarm(self) {
        if let Callback::C { data, .. } = self {
            data.disarm();
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Callback::C { func, data } => format!("<callback {:p}({:p})>", *func as *const (), data.ptr()),
            Callback::Rust(_) => "<afut internal callback>".to_string(),
        }
    }
}

/// A C function called with only its userdata, any number of times (the wakeup hook).
pub(crate) struct Hook {
    func: CallbackFn,
    data: Owned,
}

impl Hook {
    pub(crate) fn new(func: CallbackFn, data: Owned) -> Self {
        Hook { func, data }
    }

    pub(crate) fn call(&self) {
        assert_unlocked("the wakeup hook");
        // SAFETY: the caller's hook with its userdata; the API allows it to be called from any
        // thread any number of times while it is installed.
        unsafe { (self.func)(self.data.ptr()) }
    }

    pub(crate) fn describe(&self) -> String {
        format!("<callback {:p}({:p})>", self.func as *const (), self.data.ptr())
    }
}

/// Calls a done-callback with its future's handle and its own userdata.
pub(crate) fn call_done(func: DoneFn, fut: *mut afut_t, data: &Owned) {
    assert_unlocked("a done-callback");
    // SAFETY: the caller's done-callback with its own userdata, called once with a future
    // handle that stays valid for the call (the caller holds a reference to the future), on
    // the thread the API documents, with no afut lock held.
    unsafe { func(fut, data.ptr()) }
}

/// Calls a task's step with borrowed task and awaited handles and the task's userdata.
pub(crate) fn call_step(step: StepFn, task: *mut afut_t, awaited: *mut afut_t, userdata: RawPtr) {
    assert_unlocked("a task step");
    // SAFETY: the caller's step with the userdata it registered, on the loop's thread, with no
    // afut lock held; `task` and `awaited` (NULL or a future) stay alive for the call because
    // the caller holds a reference to each.
    unsafe { step(task, awaited, userdata.0) }
}

/// An installed exception handler and its userdata (freed when it is replaced or the loop freed).
pub(crate) struct Handler {
    func: HandlerFn,
    data: Owned,
}

impl Handler {
    pub(crate) fn new(func: HandlerFn, data: Owned) -> Self {
        Handler { func, data }
    }

    pub(crate) fn call(&self, event_loop: *mut afut_loop_t, context: &afut_error_context_t) {
        assert_unlocked("the exception handler");
        // SAFETY: the caller's handler with its userdata; `context` and what it points to live
        // until the call returns; no afut lock is held (asserted above in debug builds).
        unsafe { (self.func)(event_loop, context, self.data.ptr()) }
    }
}

/// Calls an executor job with its future's handle and its userdata.
pub(crate) fn call_job(func: JobFn, fut: *mut afut_t, data: &Owned) {
    assert_unlocked("an executor job");
    // SAFETY: the caller's job function with the userdata it submitted, called once on a worker
    // thread with no afut lock held (asserted above in debug builds); `fut` stays valid for the
    // call (the executor holds a reference to it).
    unsafe { func(fut, data.ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the C side saw, in order.
    #[derive(Default)]
    struct Seen(parking_lot::Mutex<Vec<&'static str>>);

    impl Seen {
        fn ptr(&self) -> *mut c_void {
            self as *const Seen as *mut c_void
        }
        fn log(&self) -> Vec<&'static str> {
            self.0.lock().clone()
        }
    }

    unsafe extern "C" fn seen_call(ud: *mut c_void) {
        // SAFETY: the tests pass a live `Seen`.
        unsafe { &*(ud as *const Seen) }.0.lock().push("call");
    }

    unsafe extern "C" fn seen_free(ud: *mut c_void) {
        // SAFETY: as for seen_call.
        unsafe { &*(ud as *const Seen) }.0.lock().push("free");
    }

    #[test]
    fn owned_frees_exactly_once_unless_disarmed_or_borrowed() {
        let seen = Seen::default();
        let owned = Owned::new(seen.ptr(), Some(seen_free));
        assert_eq!(owned.ptr(), seen.ptr());
        drop(owned);
        assert_eq!(seen.log(), ["free"]);
        Owned::new(seen.ptr(), Some(seen_free)).disarm();
        drop(Owned::borrowed(seen.ptr()));
        drop(Owned::new(seen.ptr(), None));
        assert_eq!(seen.log(), ["free"], "disarmed, borrowed and destructor-less pointers are not freed");
    }

    #[test]
    fn a_c_callback_is_called_then_its_userdata_freed() {
        let seen = Seen::default();
        Callback::c(seen_call, Owned::new(seen.ptr(), Some(seen_free))).run();
        assert_eq!(seen.log(), ["call", "free"]);
        let unrun = Seen::default();
        drop(Callback::c(seen_call, Owned::new(unrun.ptr(), Some(seen_free))));
        assert_eq!(unrun.log(), ["free"], "dropped unrun (cancelled, or its loop closed): freed, not called");
        let refused = Seen::default();
        Callback::c(seen_call, Owned::new(refused.ptr(), Some(seen_free))).disarm();
        assert!(refused.log().is_empty(), "a refused callback's userdata stays the caller's");
        assert!(Callback::c(seen_call, Owned::borrowed(seen.ptr())).describe().starts_with("<callback 0x"));
    }

    #[test]
    fn an_internal_callback_runs_its_closure_once() {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = ran.clone();
        let cb = Callback::rust(move || {
            r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(cb.describe(), "<afut internal callback>");
        cb.run();
        assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn a_hook_is_called_any_number_of_times_and_freed_once() {
        let seen = Seen::default();
        let hook = Hook::new(seen_call, Owned::new(seen.ptr(), Some(seen_free)));
        hook.call();
        hook.call();
        drop(hook);
        assert_eq!(seen.log(), ["call", "call", "free"]);
    }
}
