//! The C data the library stores and calls back: function pointers, userdata pointers and
//! their destructors.
//!
//! afut never dereferences a userdata, value or detail pointer; it only hands it back to C.
//! An [`Owned`] pointer runs its destructor exactly once when dropped, unless the library
//! [`Owned::disarm`]s it to give it back to the caller (a call that failed). All calls into C
//! function pointers live in this module.

use std::ffi::c_void;

use crate::ffi::types::afut_t;

/// `void (*)(void *)`: frees a userdata, value or exception detail.
#[allow(non_camel_case_types)]
pub type afut_free_fn = Option<unsafe extern "C" fn(ptr: *mut c_void)>;
/// `void (*)(void *userdata)`: a scheduled callback.
#[allow(non_camel_case_types)]
pub type afut_callback_fn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;
/// `void (*)(afut_t *fut, void *userdata)`: a done-callback; `fut` is borrowed for the call.
#[allow(non_camel_case_types)]
pub type afut_done_fn = Option<unsafe extern "C" fn(fut: *mut afut_t, userdata: *mut c_void)>;

pub type CallbackFn = unsafe extern "C" fn(*mut c_void);
pub type DoneFn = unsafe extern "C" fn(*mut afut_t, *mut c_void);
pub type FreeFn = unsafe extern "C" fn(*mut c_void);

/// A pointer that belongs to C. The library moves it between threads but never reads it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RawPtr(pub *mut c_void);

// SAFETY: afut only stores and returns the pointer; whatever it points to is used by the
// caller's own callbacks, on the threads the API documents (the contract the caller accepted
// by passing it). The library never dereferences it.
unsafe impl Send for RawPtr {}
// SAFETY: as above; shared references only ever copy the pointer value.
unsafe impl Sync for RawPtr {}

/// A C pointer together with its optional destructor, called exactly once on drop.
pub struct Owned {
    ptr: RawPtr,
    free: Option<FreeFn>,
}

impl Owned {
    pub fn new(ptr: *mut c_void, free: afut_free_fn) -> Self {
        Owned { ptr: RawPtr(ptr), free }
    }

    /// A pointer the library does not own (no destructor).
    pub fn borrowed(ptr: *mut c_void) -> Self {
        Owned { ptr: RawPtr(ptr), free: None }
    }

    pub fn ptr(&self) -> *mut c_void {
        self.ptr.0
    }

    /// Gives the pointer back to its caller: the destructor will not run.
    pub fn disarm(mut self) {
        self.free = None;
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(free) = self.free.take() {
            // SAFETY: the caller gave us `free` together with `ptr` as the function that
            // releases it; `take()` guarantees it runs at most once, and drop at least once.
            unsafe { free(self.ptr.0) }
        }
    }
}

/// Something scheduled on a loop with `call_soon` / `call_at`.
pub enum Callback {
    /// A C function and its userdata (freed after the call, or when dropped unrun).
    C { func: CallbackFn, data: Owned },
    /// Library-internal work.
    Rust(Box<dyn FnOnce() + Send>),
}

impl Callback {
    pub fn c(func: CallbackFn, data: Owned) -> Self {
        Callback::C { func, data }
    }

    pub fn rust(f: impl FnOnce() + Send + 'static) -> Self {
        Callback::Rust(Box::new(f))
    }

    pub fn run(self) {
        match self {
            Callback::C { func, data } => {
                // SAFETY: `func` is the caller's callback, called with the userdata it
                // registered, exactly once, on the loop's thread, with no afut lock held.
                unsafe { func(data.ptr()) };
                drop(data); // userdata_free after the callback ran
            }
            Callback::Rust(f) => f(),
        }
    }

    /// Drops the callback without freeing a C userdata: ownership goes back to the caller.
    pub fn disarm(self) {
        if let Callback::C { data, .. } = self {
            data.disarm();
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Callback::C { func, data } => format!("<callback {:p}({:p})>", *func as *const (), data.ptr()),
            Callback::Rust(_) => "<afut internal callback>".to_string(),
        }
    }
}

/// A done-callback registered on a future.
pub enum DoneCallback {
    C { func: DoneFn, data: Owned },
    /// Library-internal (boxed: rare, and it keeps this enum at 3 words).
    Rust(Box<InternalDone>),
}

/// A library-internal done-callback; `token` identifies it for removal.
pub struct InternalDone {
    token: u64,
    f: Box<dyn FnOnce(&crate::future::Future) + Send>,
}

impl DoneCallback {
    pub fn c(func: DoneFn, data: Owned) -> Self {
        DoneCallback::C { func, data }
    }

    pub fn rust(token: u64, f: impl FnOnce(&crate::future::Future) + Send + 'static) -> Self {
        DoneCallback::Rust(Box::new(InternalDone { token, f: Box::new(f) }))
    }

    /// True for the C entry `(func, userdata)`.
    pub fn matches(&self, func: DoneFn, userdata: *mut c_void) -> bool {
        match self {
            DoneCallback::C { func: f, data } => std::ptr::fn_addr_eq(*f, func) && data.ptr() == userdata,
            DoneCallback::Rust(_) => false,
        }
    }

    pub fn has_token(&self, token: u64) -> bool {
        matches!(self, DoneCallback::Rust(i) if i.token == token)
    }

    pub fn run(self, fut: &crate::future::Future) {
        match self {
            DoneCallback::C { func, data } => {
                // SAFETY: the caller's done-callback with its own userdata, called once with a
                // future pointer that stays valid for the call (`fut` holds a reference).
                unsafe { func(fut.as_ptr(), data.ptr()) };
                drop(data);
            }
            DoneCallback::Rust(i) => (i.f)(fut),
        }
    }

    pub fn disarm(self) {
        if let DoneCallback::C { data, .. } = self {
            data.disarm();
        }
    }

    pub fn describe(&self) -> String {
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
pub enum CallbackList {
    #[default]
    Empty,
    One(DoneCallback),
    Many(Vec<DoneCallback>),
}

impl CallbackList {
    pub fn push(&mut self, cb: DoneCallback) {
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

    pub fn len(&self) -> usize {
        match self {
            CallbackList::Empty => 0,
            CallbackList::One(_) => 1,
            CallbackList::Many(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves out the entries matching `pred`, keeping the others in order.
    pub fn extract(&mut self, pred: impl Fn(&DoneCallback) -> bool) -> Vec<DoneCallback> {
        let mut removed = Vec::new();
        let mut kept = CallbackList::Empty;
        for cb in std::mem::take(self) {
            if pred(&cb) { removed.push(cb) } else { kept.push(cb) }
        }
        *self = kept;
        removed
    }
}

impl IntoIterator for CallbackList {
    type Item = DoneCallback;
    type IntoIter = std::iter::Chain<std::option::IntoIter<DoneCallback>, std::vec::IntoIter<DoneCallback>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            CallbackList::Empty => None.into_iter().chain(Vec::new()),
            CallbackList::One(cb) => Some(cb).into_iter().chain(Vec::new()),
            CallbackList::Many(v) => None.into_iter().chain(v),
        }
    }
}

/// A C function called with only its userdata, any number of times (the wakeup hook).
pub struct Hook {
    func: CallbackFn,
    data: Owned,
}

impl Hook {
    pub fn new(func: CallbackFn, data: Owned) -> Self {
        Hook { func, data }
    }

    pub fn call(&self) {
        // SAFETY: the caller's hook with its userdata; the API allows it to be called from any
        // thread any number of times while it is installed.
        unsafe { (self.func)(self.data.ptr()) }
    }
}

// ----- issue 5: the step function of a task -----

/// `void (*)(afut_t *task, afut_t *awaited, void *userdata)`: a task's step (see `afut_task_new`).
#[allow(non_camel_case_types)]
pub type afut_step_fn =
    Option<unsafe extern "C" fn(task: *mut afut_t, awaited: *mut afut_t, userdata: *mut c_void)>;
pub type StepFn = unsafe extern "C" fn(*mut afut_t, *mut afut_t, *mut c_void);

/// Calls a task's step with borrowed task and awaited handles and the task's userdata.
pub fn call_step(step: StepFn, task: &crate::future::Future, awaited: Option<&crate::future::Future>, userdata: RawPtr) {
    let awaited = awaited.map_or(std::ptr::null_mut(), |f| f.as_ptr());
    // SAFETY: the caller's step with the userdata it registered, on the loop's thread, with no
    // afut lock held; `task` and `awaited` (NULL or a future) stay alive for the call because
    // the caller holds a reference to each.
    unsafe { step(task.as_ptr(), awaited, userdata.0) }
}
