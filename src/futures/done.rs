//! Done-callbacks: what `afut_add_done_callback` registers (a future keeps them in its state
//! word, see `futures::state`).
//!
//! The types are generic over the future they are called with (`F`, always
//! [`crate::futures::future::Future`] in practice), so that this module needs nothing from
//! the future's own module: a callback knows only how to call itself with "some future that
//! has a C handle".

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::abi::{DoneFn, afut_t};
use crate::callback::{Owned, call_done};

/// A future as a done-callback sees it: something with a C handle.
pub(crate) trait HasHandle {
    /// The handle C sees; valid while the caller holds a reference.
    fn handle(&self) -> *mut afut_t;
}

/// A unique token for a library-internal done-callback, so that its owner can remove it.
pub(crate) fn next_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A done-callback registered on a future.
pub(crate) enum DoneCallback<F> {
    C {
        func: DoneFn,
        data: Owned,
    },
    /// Library-internal (boxed: rare, and it keeps this enum at 3 words).
    Rust(Box<InternalDone<F>>),
}

/// A library-internal done-callback; `token` identifies it for removal.
pub(crate) struct InternalDone<F> {
    token: u64,
    f: Box<dyn FnOnce(&F) + Send>,
}

impl<F: HasHandle> DoneCallback<F> {
    pub(crate) fn c(func: DoneFn, data: Owned) -> Self {
        DoneCallback::C { func, data }
    }

    pub(crate) fn rust(token: u64, f: impl FnOnce(&F) + Send + 'static) -> Self {
        DoneCallback::Rust(Box::new(InternalDone { token, f: Box::new(f) }))
    }

    /// True for the C entry `(func, userdata)`.
    pub(crate) fn matches(&self, func: DoneFn, userdata: *mut c_void) -> bool {
        match self {
            DoneCallback::C { func: f, data } => std::ptr::fn_addr_eq(*f, func) && data.ptr() == userdata,
            DoneCallback::Rust(_) => false,
        }
    }

    pub(crate) fn has_token(&self, token: u64) -> bool {
        matches!(self, DoneCallback::Rust(i) if i.token == token)
    }

    /// Calls the callback with `fut` (which the caller keeps alive for the call), then frees
    /// its userdata.
    pub(crate) fn run(self, fut: &F) {
        match self {
            DoneCallback::C { func, data } => {
                call_done(func, fut.handle(), &data);
                drop(data);
            }
            DoneCallback::Rust(i) => (i.f)(fut),
        }
    }

    /// Drops the callback without freeing a C userdata: ownership goes back to the caller.
    pub(crate) fn disarm(self) {
        if let DoneCallback::C { data, .. } = self {
            data.disarm();
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            DoneCallback::C { func, data } => {
                format!("<done-callback {:p}({:p})>", *func as *const (), data.ptr())
            }
            DoneCallback::Rust(_) => "<afut internal done-callback>".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique() {
        assert_ne!(next_token(), next_token());
    }

    /// A fake future with a handle, so a C callback can check what it was given.
    struct Handle(*mut afut_t);
    impl HasHandle for Handle {
        fn handle(&self) -> *mut afut_t {
            self.0
        }
    }

    /// What the C side saw, in order: "run" (with the handle it got) or "free".
    #[derive(Default)]
    struct Seen(parking_lot::Mutex<Vec<(&'static str, usize)>>);

    unsafe extern "C" fn seen_run(fut: *mut afut_t, ud: *mut c_void) {
        // SAFETY: the tests pass a live `Seen`.
        unsafe { &*(ud as *const Seen) }.0.lock().push(("run", fut as usize));
    }

    unsafe extern "C" fn seen_free(ud: *mut c_void) {
        // SAFETY: as for seen_run.
        unsafe { &*(ud as *const Seen) }.0.lock().push(("free", 0));
    }

    unsafe extern "C" fn other_run(_fut: *mut afut_t, _ud: *mut c_void) {}

    fn c_entry(seen: &Seen) -> DoneCallback<Handle> {
        c_entry_with(seen_run, seen)
    }

    fn c_entry_with(func: DoneFn, seen: &Seen) -> DoneCallback<Handle> {
        DoneCallback::c(func, Owned::new(seen as *const Seen as *mut c_void, Some(seen_free)))
    }

    #[test]
    fn a_c_callback_runs_with_the_handle_then_frees_its_userdata_once() {
        let seen = Seen::default();
        c_entry(&seen).run(&Handle(std::ptr::without_provenance_mut(0x40)));
        assert_eq!(*seen.0.lock(), [("run", 0x40), ("free", 0)]);
    }

    #[test]
    fn an_unrun_c_callback_frees_its_userdata_when_dropped_unless_disarmed() {
        let seen = Seen::default();
        drop(c_entry(&seen));
        assert_eq!(*seen.0.lock(), [("free", 0)]);
        let kept = Seen::default();
        c_entry(&kept).disarm();
        assert!(kept.0.lock().is_empty(), "disarmed: the userdata is the caller's again");
        drop(c_entry(&kept));
        drop(c_entry(&kept));
        assert_eq!(*kept.0.lock(), [("free", 0), ("free", 0)], "each dropped entry frees once");
    }

    #[test]
    fn a_c_callback_matches_its_function_and_userdata_only() {
        // One function pointer value, as a C caller passes the same function twice: Rust does
        // not promise that two reifications of `seen_run` compare equal (Miri makes them
        // differ), C does.
        let (run, other_fn): (DoneFn, DoneFn) = (seen_run, other_run);
        let (seen, other) = (Seen::default(), Seen::default());
        let cb = c_entry_with(run, &seen);
        let ud = &seen as *const Seen as *mut c_void;
        assert!(cb.matches(run, ud));
        assert!(!cb.matches(other_fn, ud), "another function");
        assert!(!cb.matches(run, &other as *const Seen as *mut c_void), "another userdata");
        assert!(!cb.has_token(0), "a C entry has no token");
        assert!(cb.describe().starts_with("<done-callback 0x"));
        cb.disarm();
        let internal = DoneCallback::<Handle>::rust(9, |_| {});
        assert!(internal.has_token(9) && !internal.has_token(8));
        assert!(!internal.matches(run, ud), "an internal entry never matches a C pair");
        assert_eq!(internal.describe(), "<afut internal done-callback>");
    }
}
