//! Done-callbacks: what `afut_add_done_callback` registers, and the list a pending future
//! keeps them in.
//!
//! The types are generic over the future they are called with (`F`, always
//! [`crate::futures::future::Future`] in practice), so that this module needs nothing from
//! the future's own module: the future owns its callback list, the list knows only how to
//! call a callback with "some future that has a C handle".

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

/// A future's done-callbacks in registration order. The first one is stored inline, so a
/// future with one callback needs no allocation beyond its own.
#[derive(Default)]
pub(crate) enum CallbackList<F> {
    #[default]
    Empty,
    One(DoneCallback<F>),
    Many(Vec<DoneCallback<F>>),
}

impl<F> CallbackList<F> {
    pub(crate) fn push(&mut self, cb: DoneCallback<F>) {
        match self {
            CallbackList::Many(v) => v.push(cb),
            // Empty owns nothing: forgetting it skips its drop glue.
            CallbackList::Empty => std::mem::forget(std::mem::replace(self, CallbackList::One(cb))),
            CallbackList::One(_) => {
                let CallbackList::One(first) = std::mem::take(self) else { unreachable!() };
                *self = CallbackList::Many(vec![first, cb]);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            CallbackList::Empty => 0,
            CallbackList::One(_) => 1,
            CallbackList::Many(v) => v.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves out the entries matching `pred`, keeping the others in order.
    pub(crate) fn extract(&mut self, pred: impl Fn(&DoneCallback<F>) -> bool) -> Vec<DoneCallback<F>> {
        let mut removed = Vec::new();
        let mut kept = CallbackList::Empty;
        for cb in std::mem::take(self) {
            if pred(&cb) { removed.push(cb) } else { kept.push(cb) }
        }
        *self = kept;
        removed
    }
}

impl<F> IntoIterator for CallbackList<F> {
    type Item = DoneCallback<F>;
    type IntoIter = std::iter::Chain<std::option::IntoIter<DoneCallback<F>>, std::vec::IntoIter<DoneCallback<F>>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            CallbackList::Empty => None.into_iter().chain(Vec::new()),
            CallbackList::One(cb) => Some(cb).into_iter().chain(Vec::new()),
            CallbackList::Many(v) => None.into_iter().chain(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Fake;
    impl HasHandle for Fake {
        fn handle(&self) -> *mut afut_t {
            std::ptr::null_mut()
        }
    }

    fn counting(token: u64, log: &Arc<parking_lot::Mutex<Vec<u64>>>) -> DoneCallback<Fake> {
        let log = log.clone();
        DoneCallback::rust(token, move |_| log.lock().push(token))
    }

    #[test]
    fn list_keeps_registration_order_and_extracts_in_place() {
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut list = CallbackList::default();
        assert!(list.is_empty());
        for t in 1..=5 {
            list.push(counting(t, &log));
        }
        assert_eq!(list.len(), 5);
        let removed = list.extract(|cb| cb.has_token(2) || cb.has_token(4));
        assert_eq!(removed.len(), 2);
        assert_eq!(list.len(), 3);
        for cb in list {
            cb.run(&Fake);
        }
        assert_eq!(*log.lock(), vec![1, 3, 5]);
        drop(removed); // never run
        assert_eq!(*log.lock(), vec![1, 3, 5]);
    }

    #[test]
    fn one_entry_stays_inline_and_extracting_it_empties_the_list() {
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut list = CallbackList::default();
        list.push(counting(7, &log));
        assert!(matches!(list, CallbackList::One(_)));
        assert_eq!(list.extract(|cb| cb.has_token(7)).len(), 1);
        assert!(matches!(list, CallbackList::Empty));
    }

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
        let mut list = CallbackList::<Handle>::default();
        list.push(c_entry(&kept));
        list.push(c_entry(&kept));
        drop(list);
        assert_eq!(*kept.0.lock(), [("free", 0), ("free", 0)], "a dropped list frees each once");
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

    #[test]
    fn a_list_iterates_in_order_in_every_shape() {
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let empty = CallbackList::<Fake>::default();
        assert_eq!(empty.into_iter().count(), 0);
        let mut one = CallbackList::default();
        one.push(counting(1, &log));
        let mut many = CallbackList::default();
        for t in 2..=4 {
            many.push(counting(t, &log));
        }
        assert!(matches!(many, CallbackList::Many(_)));
        for cb in one.into_iter().chain(many) {
            cb.run(&Fake);
        }
        assert_eq!(*log.lock(), vec![1, 2, 3, 4]);
        let mut list = CallbackList::default();
        for t in 1..=3 {
            list.push(counting(t, &log));
        }
        assert!(list.extract(|cb| cb.has_token(99)).is_empty(), "nothing matches: nothing moves");
        assert_eq!(list.len(), 3);
        assert_eq!(list.extract(|_| true).len(), 3);
        assert!(list.is_empty());
    }
}
