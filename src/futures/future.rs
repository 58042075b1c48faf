//! Future: asyncio's `Future` state machine, safe to use from any thread, with no lock.
//!
//! The state is one atomic word ([`crate::futures::state`]): completion is a compare-and-swap
//! that also takes the callback list, the first callback is stored inline, further ones are
//! pushed with a compare-and-swap. A completed future whose callbacks a loop must run is
//! handed to the loop as itself (a [`Completed`], then a [`Dispatch`], each holding one
//! counted reference): the loop's queue links futures through their own state words, so a
//! completion allocates nothing. A loop-less future (concurrent.futures style) runs its
//! callbacks in the completing thread instead (SEMANTICS.md R1, F4, F5).
//!
//! The reference count is the library's own (one word: strong and weak counts), so that a
//! future is a single allocation of 88 bytes and its last release, when nobody else holds
//! it, needs no atomic read-modify-write at all.

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_void};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::abi::*;
use crate::callback::Owned;
use crate::clock;
use crate::futures::done::{DoneCallback, HasHandle};
use crate::futures::state::{self, Core, Finished, Link};
use crate::sync::{AtomicU64, Ordering, UnsafeCell};

/// A done-callback of a [`Future`].
pub(crate) type DoneCb = DoneCallback<Future>;

/// What a future needs from the event loop it is bound to. The loop (`runtime::eventloop`)
/// implements it; a future holds its loop only through this trait, so this layer knows
/// nothing of the loop's insides.
pub(crate) trait LoopLink: Send + Sync + 'static {
    /// Queues a completed future's callbacks as one contiguous run (asyncio F5): publishes
    /// the completion and queues it. A closed loop refuses it: it is published and dropped
    /// (its callbacks dropped unrun, each userdata freed once).
    fn schedule_dispatch(&self, completed: Completed);
    /// Queues one callback of a future that is already done (asyncio's `call_soon` in
    /// `add_done_callback`). On a closed loop it comes back unqueued.
    fn schedule_late(&self, fut: &Future, cb: DoneCb) -> Result<(), (afut_status_t, DoneCb)>;
    /// True on the thread currently inside the loop's `run_*` call.
    fn is_running_on_this_thread(&self) -> bool;
    /// Delivers a report to the loop's exception handler (or stderr), with no lock held.
    fn report(&self, message: &CStr, future: Option<&FutureInner>, exception: Option<&afut_exception_t>);
    /// The loop itself, for the layers above that know its type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// What a task or combinator adds to its future. Attached at creation, consulted by
/// [`Future`] for the public `set_result` / `set_exception` / `cancel`.
pub(crate) trait Behaviour: Send + Sync + 'static {
    /// True for a task (`afut_is_task`, "Task" in reports and describe()).
    fn is_task(&self) -> bool {
        false
    }
    /// `AFUT_OK` if a public `set_result` / `set_exception` may complete the future now,
    /// else the status to refuse it with.
    fn check_complete(&self, _fut: &Future) -> afut_status_t {
        AFUT_OK
    }
    /// The public cancel. The default is the plain Future cancel.
    fn cancel(&self, fut: &Future, msg: Option<CString>) -> bool {
        fut.cancel_plain(msg)
    }
    /// The cancel came back to this future while its own cancel was still being passed on
    /// (a cycle: a task awaiting a task that awaits it). The default is the plain cancel.
    fn cancel_again(&self, fut: &Future, msg: Option<CString>) -> bool {
        fut.cancel_plain(msg)
    }
    /// The future's loop was closed (futures registered with the loop's `watch_close` only).
    fn loop_closed(&self, _fut: &Future) {}
    /// The word `afut_describe` uses for a pending future ("pending" when None).
    fn pending_word(&self) -> Option<&'static str> {
        None
    }
    fn as_any(&self) -> &dyn Any;
}

/// Tags in the first 8 bytes of every future, read by `afut_isfuture`.
pub(crate) const TAG_FUTURE: u64 = 0x2174_7546_7475_6661; // "afutFut!"
/// Set while the never-retrieved report runs: the future may be inspected, not kept.
pub(crate) const TAG_FINALIZING: u64 = 0x2174_7546_6e69_6646; // "FinFut!"

/// An exception as stored by `afut_set_exception`.
pub(crate) struct Exception {
    pub(crate) code: i32,
    pub(crate) message: Option<CString>,
    pub(crate) detail: Owned,
}

impl Exception {
    fn as_c(&self) -> afut_exception_t {
        afut_exception_t {
            code: self.code,
            message: self.message.as_ref().map_or(std::ptr::null(), |m| m.as_ptr()),
            detail: self.detail.ptr(),
        }
    }
}

/// An outcome on its way into (or out of) a future.
enum Outcome {
    Result(Owned),
    /// Boxed: exceptions are the rare case, and this keeps the stored outcome at two words.
    Exception(Box<Exception>),
    Cancelled(Option<CString>),
    /// Finished with the outcome of another finished future (a `wrap_future` wrapper): its
    /// value or exception is read from there, and this reference keeps it alive.
    Mirrored(Future),
}

// The outcome kinds, as the state word stores them.
const KIND_RESULT: u8 = 0;
const KIND_EXCEPTION: u8 = 1;
const KIND_CANCELLED: u8 = 2;
const KIND_MIRRORED: u8 = 3;

/// The stored outcome: which field is live is the state word's kind, and only once the
/// future is done.
union OutcomeData {
    result: ManuallyDrop<Owned>,
    exception: ManuallyDrop<Box<Exception>>,
    cancelled: ManuallyDrop<Option<CString>>,
    mirrored: ManuallyDrop<Future>,
}

impl Outcome {
    fn into_data(self) -> (u8, OutcomeData) {
        match self {
            Outcome::Result(v) => (KIND_RESULT, OutcomeData { result: ManuallyDrop::new(v) }),
            Outcome::Exception(e) => (KIND_EXCEPTION, OutcomeData { exception: ManuallyDrop::new(e) }),
            Outcome::Cancelled(m) => (KIND_CANCELLED, OutcomeData { cancelled: ManuallyDrop::new(m) }),
            Outcome::Mirrored(f) => (KIND_MIRRORED, OutcomeData { mirrored: ManuallyDrop::new(f) }),
        }
    }

    /// # Safety
    /// `data` holds a live outcome of `kind`, which the caller moves out (exactly once).
    unsafe fn from_data(kind: u8, data: OutcomeData) -> Outcome {
        // SAFETY: the caller's promise: `kind` names the live field.
        unsafe {
            match kind {
                KIND_RESULT => Outcome::Result(ManuallyDrop::into_inner(data.result)),
                KIND_EXCEPTION => Outcome::Exception(ManuallyDrop::into_inner(data.exception)),
                KIND_CANCELLED => Outcome::Cancelled(ManuallyDrop::into_inner(data.cancelled)),
                _ => Outcome::Mirrored(ManuallyDrop::into_inner(data.mirrored)),
            }
        }
    }
}

/// A view of a done future's outcome.
enum OutcomeRef<'a> {
    Result(&'a Owned),
    Exception(&'a Exception),
    Cancelled(&'a Option<CString>),
    Mirrored(&'a Future),
}

/// The body of a future: dropped in place when the last counted reference goes, while weak
/// references may keep the allocation a little longer.
#[repr(C)]
struct Body {
    core: Core<DoneCb>,
    outcome: UnsafeCell<MaybeUninit<OutcomeData>>,
    event_loop: Option<Arc<dyn LoopLink>>,
    /// What makes this future a task or a combinator (None: a plain future). Boxed twice so
    /// that plain futures pay one word for it.
    behaviour: Option<Box<Box<dyn Behaviour>>>,
}

/// A future's allocation. `#[repr(C)]` so that the tag is its first 8 bytes; a C handle
/// (`afut_t *`) is its address.
#[repr(C)]
pub(crate) struct FutureInner {
    /// `afut_isfuture` reads it; a plain std atomic (never modelled by loom).
    tag: std::sync::atomic::AtomicU64,
    /// Strong references (low 32 bits) and weak ones (high 32 bits, plus one held by the
    /// strong ones together until the body is dropped).
    counts: AtomicU64,
    body: ManuallyDrop<Body>,
}

const STRONG_ONE: u64 = 1;
const STRONG_MASK: u64 = 0x7fff_ffff;
/// The dispatch reserve of a loop future: a reference paid for at creation (so the
/// completion takes no read-modify-write for it) and handed to the loop's queue if the
/// completion queues callbacks. While the queue holds it (`QUEUED` in the state word and this
/// bit set), the future stays alive even with no strong reference left; the dispatch clears
/// the bit when it is done (one read-modify-write), and whichever of the dispatch and the
/// last strong release comes second destroys the future. Unused (never queued), it counts
/// for nothing, and the last strong release clears it (so with no strong reference left, the
/// bit alone says whether a dispatch still holds the future).
const RESERVE: u64 = 1 << 31;
const WEAK_ONE: u64 = 1 << 32;
/// More strong or weak references than this is a leak in the caller (or an attack): abort,
/// as `Arc` does.
const COUNT_LIMIT: u64 = 1 << 30;

/// A counted reference to a future.
pub(crate) struct Future(NonNull<FutureInner>);

// SAFETY: a `FutureInner` is shared between threads by design: its mutable parts are atomics,
// or cells accessed only under the state word's protocol (see `futures::state`), and what it
// owns (C pointers, behaviours, loop links) is Send + Sync.
unsafe impl Send for Future {}
// SAFETY: as above.
unsafe impl Sync for Future {}

/// A weak reference: keeps the allocation, not the future; [`WeakFuture::upgrade`] fails
/// once the last counted reference went.
pub(crate) struct WeakFuture(NonNull<FutureInner>);

// SAFETY: as for `Future`; a weak reference only touches the counts.
unsafe impl Send for WeakFuture {}
// SAFETY: as above.
unsafe impl Sync for WeakFuture {}

/// The outcome as `afut_exception()` reports it.
pub(crate) enum ExceptionView {
    NoException,
    Exception(afut_exception_t),
}

impl FutureInner {
    fn body(&self) -> &Body {
        &self.body
    }

    fn core(&self) -> &Core<DoneCb> {
        &self.body.core
    }

    /// The outcome of this future, done and published: `word` is what `done_state` returned
    /// for it.
    fn outcome(&self, word: u64) -> OutcomeRef<'_> {
        let kind = Core::<DoneCb>::kind(word);
        // SAFETY: `done_state` saw the word published, which synchronises with the
        // completion's write of the outcome; the field read is the one the word's kind names;
        // the outcome is never written again and lives as long as the body (as long as `self`).
        self.body.outcome.with(|p| unsafe {
            let o = (*p).assume_init_ref();
            match kind {
                KIND_RESULT => OutcomeRef::Result(&*(&*o.result as *const Owned)),
                KIND_EXCEPTION => OutcomeRef::Exception(&*(&**o.exception as *const Exception)),
                KIND_CANCELLED => OutcomeRef::Cancelled(&*(&*o.cancelled as *const Option<CString>)),
                _ => OutcomeRef::Mirrored(&*(&*o.mirrored as *const Future)),
            }
        })
    }
}

impl Future {
    pub(crate) fn new(event_loop: Option<Arc<dyn LoopLink>>) -> Future {
        Future::with_behaviour(event_loop, None)
    }

    /// A future with its own behaviour (a task, a gather, ...).
    pub(crate) fn with_behaviour(
        event_loop: Option<Arc<dyn LoopLink>>,
        behaviour: Option<Box<dyn Behaviour>>,
    ) -> Future {
        let inner = Box::new(FutureInner {
            tag: std::sync::atomic::AtomicU64::new(TAG_FUTURE),
            counts: AtomicU64::new(STRONG_ONE | WEAK_ONE | if event_loop.is_some() { RESERVE } else { 0 }),
            body: ManuallyDrop::new(Body {
                core: Core::new(),
                outcome: UnsafeCell::new(MaybeUninit::uninit()),
                event_loop,
                behaviour: behaviour.map(Box::new),
            }),
        });
        Future(NonNull::from(Box::leak(inner)))
    }

    /// The handle C sees. The pointer stays valid while this reference lives.
    pub(crate) fn as_ptr(&self) -> *mut afut_t {
        self.0.as_ptr() as *mut afut_t
    }

    pub(crate) fn inner(&self) -> &FutureInner {
        // SAFETY: a counted reference keeps the allocation and the body alive.
        unsafe { self.0.as_ref() }
    }

    fn core(&self) -> &Core<DoneCb> {
        self.inner().core()
    }

    pub(crate) fn same(&self, other: &Future) -> bool {
        self.0 == other.0
    }

    /// A weak reference to this future.
    pub(crate) fn downgrade(&self) -> WeakFuture {
        let old = self.inner().counts.fetch_add(WEAK_ONE, Ordering::Relaxed);
        if old >> 32 >= COUNT_LIMIT {
            std::process::abort();
        }
        WeakFuture(self.0)
    }

    /// Gives this reference to C (`afut_t *`): one count that [`Future::from_raw`] takes back.
    pub(crate) fn into_raw(self) -> *mut afut_t {
        let p = self.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Takes back one reference C held.
    ///
    /// # Safety
    /// `p` is a live `afut_t *` from [`Future::into_raw`] (or borrowed for as long as the
    /// returned value is not dropped, see `ffi::convert`).
    pub(crate) unsafe fn from_raw(p: *const afut_t) -> Future {
        // SAFETY: the caller's promise: `p` is the address of a live FutureInner.
        Future(unsafe { NonNull::new_unchecked(p as *mut FutureInner) })
    }

    /// Adds one reference for C (`afut_ref`).
    ///
    /// # Safety
    /// `p` is a live `afut_t *` (the caller holds a reference, or borrows one for a callback).
    pub(crate) unsafe fn increment_raw(p: *const afut_t) {
        // SAFETY: forwarded contract; the clone is forgotten into the caller's new count.
        let borrowed = ManuallyDrop::new(unsafe { Future::from_raw(p) });
        std::mem::forget(Future::clone(&borrowed));
    }

    #[inline]
    pub(crate) fn set_result(&self, value: Owned) -> Result<(), (afut_status_t, Owned)> {
        if let Some(s) = self.refused_by_behaviour() {
            return Err((s, value));
        }
        self.complete(Outcome::Result(value), false).map_err(|(s, o)| match o {
            Outcome::Result(v) => (s, v),
            _ => unreachable!(),
        })
    }

    pub(crate) fn set_exception(&self, exc: Exception) -> Result<(), (afut_status_t, Exception)> {
        if let Some(s) = self.refused_by_behaviour() {
            return Err((s, exc));
        }
        self.complete(Outcome::Exception(Box::new(exc)), true).map_err(|(s, o)| match o {
            Outcome::Exception(e) => (s, *e),
            _ => unreachable!(),
        })
    }

    /// asyncio `cancel(msg)`: clears the unretrieved mark whatever happens (F12, B8); true
    /// if this call cancelled a pending future.
    pub(crate) fn cancel(&self, msg: Option<CString>) -> bool {
        match &self.inner().body().behaviour {
            // A behaviour may pass the cancel on to other futures (a task to what it awaits,
            // a gather to its children): see `propagation` for how depth and cycles are kept
            // in bounds.
            Some(b) => {
                propagation::enter(self, |again| if again { b.cancel_again(self, msg) } else { b.cancel(self, msg) })
            }
            None => self.cancel_plain(msg),
        }
    }

    /// Cancels this future on behalf of another future's cancel (a task cancelling what it
    /// awaits, a gather its children). Runs at once, unless the propagation is already very
    /// deep on this thread: then it is queued and run by the outermost cancel before that
    /// returns, so that a chain of any depth needs constant stack. `then` receives what the
    /// cancel returned.
    pub(crate) fn cancel_propagated(&self, msg: Option<CString>, then: Option<propagation::Then>) {
        propagation::propagate(self, msg, then);
    }

    // ----- hooks for tasks and combinators (see Behaviour) -----

    /// The plain Future cancel, bypassing any behaviour.
    pub(crate) fn cancel_plain(&self, msg: Option<CString>) -> bool {
        self.complete(Outcome::Cancelled(msg), false).is_ok()
    }

    /// The behaviour attached at creation, if any.
    pub(crate) fn behaviour(&self) -> Option<&dyn Behaviour> {
        self.inner().body().behaviour.as_deref().map(|b| &**b)
    }

    /// Some(status) if the behaviour refuses a public set_result / set_exception now.
    fn refused_by_behaviour(&self) -> Option<afut_status_t> {
        let status = self.inner().body().behaviour.as_ref().map_or(AFUT_OK, |b| b.check_complete(self));
        (status != AFUT_OK).then_some(status)
    }
    // ----- end of the hooks -----

    /// Sets the outcome of a pending future and schedules its callbacks. `unretrieved`: the
    /// outcome is an exception nobody has seen yet.
    fn complete(&self, outcome: Outcome, unretrieved: bool) -> Result<(), (afut_status_t, Outcome)> {
        let inner = self.inner();
        let core = inner.core();
        let event_loop = &inner.body().event_loop;
        let begun = match core.begin_complete(event_loop.is_some()) {
            Ok(b) => b,
            Err(()) => {
                if matches!(outcome, Outcome::Cancelled(_)) && core.done_state().is_some() {
                    // A cancel clears the mark whatever happens (F12, B8).
                    core.set_retrieved();
                }
                return Err((AFUT_ERR_INVALID_STATE, outcome));
            }
        };
        // The word is DONE | BUSY: this thread alone writes the outcome, once.
        let (kind, data) = outcome.into_data();
        // SAFETY: exclusive under BUSY (see `futures::state`); readers wait until `finish`
        // or `publish` releases it.
        inner.body().outcome.with_mut(|p| unsafe { (*p).write(data) });
        let waiters = begun.had_waiters();
        match core.finish(begun, kind, unretrieved) {
            Finished::Now(callbacks) => {
                if waiters {
                    waiters::notify(self.as_ptr());
                }
                if !callbacks.is_empty() {
                    // A loop-less future: the callbacks run right here, in registration order.
                    // A callback may drop the last reference the caller held: keep one of
                    // our own until every callback ran.
                    let this = self.clone();
                    for cb in callbacks {
                        cb.run(&this);
                    }
                }
            }
            Finished::Queue(word) => {
                let l = event_loop.as_ref().expect("a queued future has a loop");
                // The queue takes the dispatch reserve (see `RESERVE`): a callback may drop the
                // application's last reference.
                l.schedule_dispatch(Completed { fut: self.0, word: Some(word) });
                if waiters {
                    waiters::notify(self.as_ptr());
                }
            }
        }
        Ok(())
    }

    /// `afut_add_done_callback`: appended while pending; scheduled at once (never inline)
    /// when done; run at once in this thread for a done loop-less future.
    #[inline]
    pub(crate) fn add_done_callback(&self, cb: DoneCb) -> Result<(), (afut_status_t, DoneCb)> {
        let cb = match self.core().add(cb) {
            Ok(()) => return Ok(()),
            Err(cb) => cb,
        };
        match &self.inner().body().event_loop {
            Some(l) => l.schedule_late(self, cb),
            None => {
                let this = self.clone();
                cb.run(&this);
                Ok(())
            }
        }
    }

    /// Removes every pending `(func, userdata)` entry; their userdata is freed once the state
    /// word is released. Returns how many.
    pub(crate) fn remove_done_callback(&self, func: DoneFn, userdata: *mut c_void) -> usize {
        let removed = self.core().remove(|cb| cb.matches(func, userdata));
        let n = removed.len();
        drop(removed);
        n
    }

    /// Removes a library-internal callback by its token.
    pub(crate) fn remove_token(&self, token: u64) -> bool {
        !self.core().remove(|cb| cb.has_token(token)).is_empty()
    }

    /// The outcome of a done future (waiting out a completion that is still writing it);
    /// None while pending.
    fn done_outcome(&self) -> Option<OutcomeRef<'_>> {
        let word = self.core().done_state()?;
        Some(self.inner().outcome(word))
    }

    /// `afut_result`: the value (borrowed from the future), or the status of its outcome.
    pub(crate) fn result(&self) -> Result<*mut c_void, afut_status_t> {
        match self.done_outcome() {
            None => Err(AFUT_ERR_INVALID_STATE),
            Some(OutcomeRef::Result(v)) => Ok(v.ptr()),
            Some(OutcomeRef::Exception(_)) => {
                self.core().set_retrieved();
                Err(AFUT_ERR_EXCEPTION)
            }
            Some(OutcomeRef::Cancelled(_)) => Err(AFUT_ERR_CANCELLED),
            Some(OutcomeRef::Mirrored(source)) => {
                self.core().set_retrieved();
                source.result()
            }
        }
    }

    /// `afut_exception`: the exception (borrowed), none for a result, or the status.
    pub(crate) fn exception(&self) -> Result<ExceptionView, afut_status_t> {
        match self.done_outcome() {
            None => Err(AFUT_ERR_INVALID_STATE),
            Some(OutcomeRef::Result(_)) => Ok(ExceptionView::NoException),
            Some(OutcomeRef::Exception(e)) => {
                let view = ExceptionView::Exception(e.as_c());
                self.core().set_retrieved();
                Ok(view)
            }
            Some(OutcomeRef::Cancelled(_)) => Err(AFUT_ERR_CANCELLED),
            Some(OutcomeRef::Mirrored(source)) => {
                self.core().set_retrieved();
                source.exception()
            }
        }
    }

    /// The loop this future is bound to (None: loop-less).
    pub(crate) fn event_loop(&self) -> Option<&Arc<dyn LoopLink>> {
        self.inner().body().event_loop.as_ref()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.inner().is_done()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        matches!(self.done_outcome(), Some(OutcomeRef::Cancelled(_)))
    }

    /// The cancel message (borrowed; stable for the future's life), NULL if none.
    pub(crate) fn cancel_message(&self) -> *const c_char {
        match self.done_outcome() {
            Some(OutcomeRef::Cancelled(Some(m))) => m.as_ptr(),
            _ => ptr::null(),
        }
    }

    /// A done future's exception as a copy (message copied, detail borrowed: the caller keeps
    /// this future alive while it uses it), marking it retrieved. None for a result, a
    /// cancellation or a pending future.
    pub(crate) fn copy_exception(&self) -> Option<Exception> {
        match self.done_outcome()? {
            OutcomeRef::Exception(e) => {
                let copy =
                    Exception { code: e.code, message: e.message.clone(), detail: Owned::borrowed(e.detail.ptr()) };
                self.core().set_retrieved();
                Some(copy)
            }
            OutcomeRef::Mirrored(source) => {
                self.core().set_retrieved();
                source.copy_exception()
            }
            _ => None,
        }
    }

    /// An owned copy of the cancel message (None if not cancelled or cancelled without one).
    pub(crate) fn cancel_message_owned(&self) -> Option<CString> {
        match self.done_outcome() {
            Some(OutcomeRef::Cancelled(m)) => m.clone(),
            _ => None,
        }
    }

    /// Gives this (pending) future the outcome of the finished `source` (the wrapper side of
    /// `wrap_future`): a cancellation is copied, message included; a result or an exception is
    /// read from `source`, which this future keeps alive, so the value and detail are borrowed
    /// from it. Nothing happens if this future is already done (asyncio
    /// `_copy_future_state`, F21).
    pub(crate) fn mirror(&self, source: &Future) {
        let (copied, exception) = match source.done_outcome() {
            None => return,
            Some(OutcomeRef::Cancelled(m)) => (Outcome::Cancelled(m.clone()), false),
            Some(OutcomeRef::Result(_)) => (Outcome::Mirrored(source.clone()), false),
            Some(OutcomeRef::Exception(_)) => {
                // The wrapper now carries the exception and reports it if nobody reads it;
                // the source's copy counts as seen.
                source.core().set_retrieved();
                (Outcome::Mirrored(source.clone()), true)
            }
            Some(OutcomeRef::Mirrored(root)) => {
                // Point at the future that holds the outcome, not at the wrapper: a chain of
                // wrappers then reads and frees its outcome in constant time and stack,
                // whatever its length.
                let exception = root.holds_exception();
                source.core().set_retrieved();
                (Outcome::Mirrored(root.clone()), exception)
            }
        };
        let _ = self.complete(copied, exception);
    }

    /// True if the future finished with an exception (without marking it retrieved).
    fn holds_exception(&self) -> bool {
        match self.done_outcome() {
            Some(OutcomeRef::Exception(_)) => true,
            Some(OutcomeRef::Mirrored(root)) => root.holds_exception(),
            _ => false,
        }
    }

    /// `afut_wait`: blocks until done or `timeout_s` passes.
    pub(crate) fn wait(&self, timeout_s: f64) -> afut_status_t {
        if self.event_loop().is_some_and(|l| l.is_running_on_this_thread()) {
            return AFUT_ERR_WRONG_THREAD;
        }
        let deadline = if timeout_s.is_nan() {
            return AFUT_ERR_INVALID_ARGUMENT;
        } else if timeout_s == f64::INFINITY {
            None
        } else {
            // A negative timeout acts as 0; a deadline too far to represent (1e19 s, DBL_MAX)
            // is "forever", never "now".
            clock::instant_of(clock::now() + timeout_s.max(0.0))
        };
        if self.is_done() {
            return AFUT_OK;
        }
        waiters::wait(self.as_ptr(), deadline, || !self.core().register_waiter())
    }

    pub(crate) fn describe(&self) -> String {
        self.inner().describe()
    }
}

impl Clone for Future {
    fn clone(&self) -> Future {
        let old = self.inner().counts.fetch_add(STRONG_ONE, Ordering::Relaxed);
        if old & STRONG_MASK >= COUNT_LIMIT {
            std::process::abort();
        }
        Future(self.0)
    }
}

impl Drop for Future {
    fn drop(&mut self) {
        let inner = self.inner();
        // The only reference and no weak one (and no dispatch in flight): nobody else can
        // reach the future (every other holder's access, a callback's included, is through a
        // counted reference or the dispatch reserve, whose release this acquire load
        // synchronises with), so it goes without a read-modify-write.
        let mut c = inner.counts.load(Ordering::Acquire);
        if c == STRONG_ONE | WEAK_ONE || (c == STRONG_ONE | RESERVE | WEAK_ONE && !inner.core().is_queued()) {
            // SAFETY: the last reference, as just shown; nothing else can reach it.
            unsafe { destroy(self.0, true) };
            return;
        }
        if c & RESERVE == 0 {
            self.release_plain();
            return;
        }
        // The reserve is set. Whether a dispatch holds it must be read while this reference
        // still keeps the future alive (once the count is down, a dispatch may destroy it at
        // any moment), so the decrement is a compare-and-swap of the counts as they were
        // when the state word was read: with this the only strong reference and the counts
        // unchanged, nobody could complete (and queue) the future in between.
        loop {
            let last = c & STRONG_MASK == 1;
            let dispatch_holds = last && inner.core().is_queued();
            // The last release of a future whose reserve was never used clears the reserve in
            // the same step, so that a weak upgrade sees the future dead from then on (with no
            // strong reference left, the reserve alone tells an upgrade whether a dispatch
            // still holds the future).
            let new = if last && !dispatch_holds { (c - STRONG_ONE) & !RESERVE } else { c - STRONG_ONE };
            match inner.counts.compare_exchange_weak(c, new, Ordering::Release, Ordering::Acquire) {
                Ok(_) => {
                    if c & STRONG_MASK != 1 || dispatch_holds {
                        // Not the last; or the dispatch clears the reserve after this decrement
                        // (in the counts' modification order), sees no strong reference left
                        // and destroys. Either way the future is not touched again here.
                        return;
                    }
                    inner.counts.load(Ordering::Acquire);
                    // SAFETY: no counted reference is left, and the reserve was never used.
                    unsafe { destroy(self.0, c == STRONG_ONE | RESERVE | WEAK_ONE) };
                    return;
                }
                Err(now) if now & RESERVE == 0 => {
                    // The dispatch released the reserve meanwhile: the plain decrement.
                    self.release_plain();
                    return;
                }
                Err(now) => c = now,
            }
        }
    }
}

impl Future {
    /// The plain last-or-not release of a strong reference while no dispatch reserve is held:
    /// one decrement, and the destruction if it was the last.
    #[inline]
    fn release_plain(&self) {
        let inner = self.inner();
        let old = inner.counts.fetch_sub(STRONG_ONE, Ordering::Release);
        if old & STRONG_MASK != 1 {
            return;
        }
        // Synchronise with every earlier release (an acquire load rather than an acquire
        // fence, which ThreadSanitizer does not model).
        inner.counts.load(Ordering::Acquire);
        // SAFETY: no counted reference is left, and no dispatch holds the future.
        unsafe { destroy(self.0, old == STRONG_ONE | WEAK_ONE) };
    }
}

/// Releases the dispatch reserve of a queued future (its dispatch is over, or it was dropped
/// unrun): destroys the future if no strong reference is left.
///
/// # Safety
/// `p` is a future whose reserve the caller holds (a [`Dispatch`]); called once per dispatch.
unsafe fn release_reserve(p: NonNull<FutureInner>) {
    // SAFETY: the reserve keeps the allocation and the body alive until this release.
    let counts = unsafe { counts(p) };
    // No strong and no weak reference: nobody else can reach the future (a weak upgrade
    // could take a strong one while the reserve is held), so no read-modify-write.
    let c = counts.load(Ordering::Acquire);
    if c == RESERVE | WEAK_ONE {
        // SAFETY: the last holder, as just shown.
        unsafe { destroy(p, true) };
        return;
    }
    let old = counts.fetch_and(!RESERVE, Ordering::AcqRel);
    if old & STRONG_MASK == 0 {
        // The last strong release came first and left the future to this one.
        // SAFETY: no counted reference is left and the reserve is released.
        unsafe { destroy(p, old == RESERVE | WEAK_ONE) };
    }
}

/// Destroys a future whose last counted reference went: the report, the body, then the
/// allocation unless weak references still hold it. `no_weak`: no weak reference existed when
/// the last counted one went (none can appear after).
///
/// # Safety
/// No counted reference is left (so nothing but weak references can reach the future, and
/// they only touch the counts); called once.
unsafe fn destroy(p: NonNull<FutureInner>, no_weak: bool) {
    // SAFETY: the caller's promise; `finalize` runs before the body is dropped.
    unsafe {
        finalize(p);
        let counts = counts(p);
        // An unused dispatch reserve may still be marked: it counts for nothing here.
        if no_weak
            || counts.load(Ordering::Acquire) & !RESERVE == WEAK_ONE
            || counts.fetch_sub(WEAK_ONE, Ordering::Release) & !RESERVE == WEAK_ONE
        {
            counts.load(Ordering::Acquire);
            drop(Box::from_raw(p.as_ptr()));
        }
    }
}

/// The never-retrieved report, then the body is dropped (what it owns released through
/// `propagation::release`).
///
/// # Safety
/// As for [`destroy`].
unsafe fn finalize(p: NonNull<FutureInner>) {
    // SAFETY: the caller's promise.
    let inner = unsafe { p.as_ref() };
    let body = inner.body();
    let core = &body.core;
    let done = core.done_state();
    if let Some(word) = done
        && Core::<DoneCb>::unretrieved(word)
    {
        // Clear first: nothing the handler does can make this report twice (F15 [C]).
        core.set_retrieved();
        let exc = match inner.outcome(word) {
            OutcomeRef::Exception(e) => Some(e.as_c()),
            OutcomeRef::Mirrored(source) => match source.exception() {
                Ok(ExceptionView::Exception(e)) => Some(e),
                _ => None,
            },
            _ => None,
        };
        if let (Some(l), Some(exc)) = (&body.event_loop, exc) {
            let l = l.clone();
            // The handler may inspect the future but not keep it (B7): afut_ref and every
            // call that would take a new reference refuse a finalizing future.
            inner.tag.store(TAG_FINALIZING, std::sync::atomic::Ordering::Release);
            let msg = if inner.kind_word() == "Task" {
                c"Task exception was never retrieved"
            } else {
                c"Future exception was never retrieved"
            };
            l.report(msg, Some(inner), Some(&exc));
        }
    }
    inner.tag.store(0, std::sync::atomic::Ordering::Release);
    let outcome = done.map(|word| {
        // SAFETY: the future is done, so the outcome of this kind is live; it is moved out
        // once, here, and the body below never touches it again.
        body.outcome.with(|o| unsafe { Outcome::from_data(Core::<DoneCb>::kind(word), ptr::read(o).assume_init()) })
    });
    let callbacks = core.take_for_drop();
    // SAFETY: nothing else reaches the body any more (the caller's promise); only the
    // behaviour is moved out, the rest is dropped in place, once.
    let body = unsafe { &mut *ptr::addr_of_mut!((*p.as_ptr()).body) };
    let behaviour = body.behaviour.take();
    // What may own other futures (a behaviour's inputs, a mirrored source, callbacks that
    // capture futures or whose userdata_free releases some) is released through
    // `propagation::release`, which keeps the stack flat however deep the structure is.
    // The rest drops here: value_free / detail_free run then.
    if behaviour.is_some() || !callbacks.is_empty() || matches!(outcome, Some(Outcome::Mirrored(_))) {
        propagation::release(propagation::Remains { _outcome: outcome, _callbacks: callbacks, _behaviour: behaviour });
    } else {
        drop(outcome);
        // Empty (just checked): it owns nothing, so its drop glue need not run.
        std::mem::forget(callbacks);
    }
    // SAFETY: the body is dropped once; the outcome was moved out above (the union has no
    // drop glue) and the behaviour taken.
    unsafe { ManuallyDrop::drop(body) };
}

/// The counts of a future, reached without a reference to its body (which may be gone).
///
/// # Safety
/// The allocation is alive (the caller holds a reference of some kind).
unsafe fn counts<'a>(p: NonNull<FutureInner>) -> &'a AtomicU64 {
    // SAFETY: the caller's promise; only the field is borrowed.
    unsafe { &*ptr::addr_of!((*p.as_ptr()).counts) }
}

impl WeakFuture {
    /// A counted reference, unless the last one already went.
    pub(crate) fn upgrade(&self) -> Option<Future> {
        // SAFETY: a weak reference keeps the allocation (and so the counts) alive.
        let counts = unsafe { counts(self.0) };
        let mut c = counts.load(Ordering::Relaxed);
        loop {
            // With no strong reference left, the future lives on only while a dispatch holds
            // its reserve (see `RESERVE`): the last release of a future whose reserve was
            // never used cleared it.
            if c & STRONG_MASK == 0 && c & RESERVE == 0 {
                return None;
            }
            match counts.compare_exchange_weak(c, c + STRONG_ONE, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(Future(self.0)),
                Err(now) => c = now,
            }
        }
    }

    /// True once the last counted reference went (and no dispatch holds the future).
    pub(crate) fn is_dead(&self) -> bool {
        // SAFETY: a weak reference keeps the counts alive.
        let c = unsafe { counts(self.0) }.load(Ordering::Acquire);
        c & STRONG_MASK == 0 && c & RESERVE == 0
    }
}

impl Drop for WeakFuture {
    fn drop(&mut self) {
        // SAFETY: a weak reference keeps the allocation alive until this release.
        let counts = unsafe { counts(self.0) };
        if counts.fetch_sub(WEAK_ONE, Ordering::Release) & !RESERVE == WEAK_ONE {
            counts.load(Ordering::Acquire);
            // SAFETY: the last weak reference, and the strong ones released theirs (the body
            // is gone): nobody else can reach the allocation.
            drop(unsafe { Box::from_raw(self.0.as_ptr()) });
        }
    }
}

/// A completed future whose callbacks its loop must run, with its dispatch reserve (see
/// `RESERVE`); its state word is still exclusive (BUSY) until the queue publishes it with
/// [`Completed::publish`] or [`Completed::publish_linked`].
pub(crate) struct Completed {
    fut: NonNull<FutureInner>,
    /// The word to publish (taken by the publication).
    word: Option<u64>,
}

// SAFETY: it stands for the future's reserve, a reference of its own; futures are Send.
unsafe impl Send for Completed {}

impl Completed {
    fn core(&self) -> &Core<DoneCb> {
        // SAFETY: the reserve keeps the future alive.
        unsafe { self.fut.as_ref() }.core()
    }

    /// Publishes the completion with no queue link (the loop's own queue, or a refusal).
    #[inline]
    pub(crate) fn publish(self) -> Dispatch {
        self.publish_linked(0)
    }

    /// Publishes the completion with `next` as its link in the loop's remote queue.
    #[inline]
    pub(crate) fn publish_linked(mut self, next: Link) -> Dispatch {
        let word = self.word.take().expect("published once");
        self.core().publish(word, next);
        let fut = self.fut;
        std::mem::forget(self);
        Dispatch(fut)
    }
}

impl Drop for Completed {
    fn drop(&mut self) {
        if let Some(word) = self.word.take() {
            // Never queued: publish, then drop the callbacks unrun.
            self.core().publish(word, 0);
            drop(Dispatch(self.fut));
        }
    }
}

/// A published completed future waiting for (or in) its loop's dispatch, holding its
/// dispatch reserve (see `RESERVE`): running it runs its callbacks in registration order;
/// dropping it drops the ones left unrun (each userdata freed once). Either way the reserve
/// is released at the end, which destroys the future if nobody else holds it.
pub(crate) struct Dispatch(NonNull<FutureInner>);

// SAFETY: as for `Completed`.
unsafe impl Send for Dispatch {}

impl Dispatch {
    fn core(&self) -> &Core<DoneCb> {
        // SAFETY: the reserve keeps the future alive.
        unsafe { self.0.as_ref() }.core()
    }

    /// The node as a link value, keeping it.
    pub(crate) fn link_value(&self) -> Link {
        self.0.as_ptr() as Link
    }

    /// The link stored in a queued node.
    ///
    /// # Safety
    /// `link` came from [`Dispatch::into_link`] and the node is still queued (its reserve
    /// keeps it alive).
    pub(crate) unsafe fn peek_next(link: Link) -> Link {
        // SAFETY: the caller's promise.
        unsafe { (*(link as *const FutureInner)).core().link() }
    }

    /// Changes the link (a push that lost its compare-and-swap and tries again).
    pub(crate) fn relink(&self, old: Link, new: Link) {
        self.core().relink(old, new);
    }

    /// The node as a link value (the queue owns it, and its reserve, from now on).
    pub(crate) fn into_link(self) -> Link {
        let link = self.link_value();
        std::mem::forget(self);
        debug_assert!(link & state::LINK_BOXED == 0);
        link
    }

    /// # Safety
    /// `link` came from [`Dispatch::into_link`] and is taken back once.
    pub(crate) unsafe fn from_link(link: Link) -> Dispatch {
        // SAFETY: the caller's promise: the reserve comes back.
        Dispatch(unsafe { NonNull::new_unchecked(link as *mut FutureInner) })
    }

    /// Starts the dispatch: yields the callbacks in registration order, with the future
    /// ([`DispatchRun::future`]) to call them with.
    #[inline]
    pub(crate) fn run(self) -> DispatchRun {
        let callbacks = self.core().take_dispatch();
        let p = self.0;
        std::mem::forget(self);
        // SAFETY: a view of the future that is never dropped as a counted reference: the
        // reserve, released by `DispatchRun`'s drop, keeps the future alive meanwhile.
        DispatchRun { callbacks: ManuallyDrop::new(callbacks), fut: ManuallyDrop::new(Future(p)) }
    }
}

impl Drop for Dispatch {
    fn drop(&mut self) {
        // Dropped unrun (a closed loop): the callbacks go unrun, then the reserve.
        drop(self.core().take_dispatch());
        // SAFETY: this dispatch holds the reserve, released once, here.
        unsafe { release_reserve(self.0) };
    }
}

/// The callbacks of a dispatch, in registration order, and the future they belong to, kept
/// alive by its dispatch reserve (so a callback may drop the application's last reference).
/// Dropping it drops the callbacks left unrun, then releases the reserve.
pub(crate) struct DispatchRun {
    callbacks: ManuallyDrop<state::Callbacks<DoneCb>>,
    fut: ManuallyDrop<Future>,
}

impl DispatchRun {
    pub(crate) fn future(&self) -> &Future {
        &self.fut
    }
}

impl Iterator for DispatchRun {
    type Item = DoneCb;

    #[inline]
    fn next(&mut self) -> Option<DoneCb> {
        self.callbacks.next()
    }
}

impl Drop for DispatchRun {
    fn drop(&mut self) {
        // Callbacks left unrun only after a panic or an early end: an empty list owns nothing
        // and needs no drop glue (the common case, kept out of line otherwise).
        if !self.callbacks.is_empty() {
            // SAFETY: dropped once, here; the field is not used again.
            unsafe { ManuallyDrop::drop(&mut self.callbacks) };
        }
        // SAFETY: the run holds the reserve (taken over from its `Dispatch`), released once.
        unsafe { release_reserve(self.fut.0) };
    }
}

impl FutureInner {
    /// "Task" for a task, "Future" otherwise (describe and reports).
    fn kind_word(&self) -> &'static str {
        if self.body().behaviour.as_ref().is_some_and(|b| b.is_task()) { "Task" } else { "Future" }
    }

    pub(crate) fn tag(&self) -> u64 {
        self.tag.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.core().is_done()
    }

    /// asyncio-style repr: `<Future pending cb=[2]>`, `<Future finished result=0x1f2e>`, ...
    pub(crate) fn describe(&self) -> String {
        // Asked before looking at the state: a behaviour takes its own lock.
        let pending = self.body().behaviour.as_ref().and_then(|b| b.pending_word()).unwrap_or("pending");
        let core = self.core();
        let Some(word) = core.done_state() else {
            let body = match core.pending_count() {
                Some(0) => pending.to_string(),
                Some(n) => format!("{pending} cb=[{n}]"),
                // Completed meanwhile.
                None => return self.describe(),
            };
            return format!("<{} {body}>", self.kind_word());
        };
        let body = match self.outcome(word) {
            OutcomeRef::Cancelled(_) => "cancelled".to_string(),
            OutcomeRef::Result(v) if v.ptr().is_null() => "finished result=NULL".to_string(),
            OutcomeRef::Result(v) => format!("finished result={:#x}", v.ptr() as usize),
            OutcomeRef::Exception(e) => match &e.message {
                Some(m) => format!("finished exception=code {}: {}", e.code, m.to_string_lossy()),
                None => format!("finished exception=code {}", e.code),
            },
            OutcomeRef::Mirrored(source) => {
                let text = source.describe();
                let body = text.split_once(' ').map_or("finished", |(_, b)| b.trim_end_matches('>'));
                return format!("<{} {body}>", self.kind_word());
            }
        };
        format!("<{} {body}>", self.kind_word())
    }
}

/// Where `afut_wait` blocks: a fixed table of mutex + condition variable pairs, picked by the
/// future's address, so that a future pays nothing for waiting it never does. A waiter marks
/// the future (`WAITERS` in its state word) while holding its bucket's mutex; a completion
/// that saw the mark takes the same mutex before it notifies, so a wakeup is never lost.
/// Futures sharing a bucket wake each other spuriously, and each waiter checks its own.
mod waiters {
    use std::time::Instant;

    #[cfg(not(all(test, loom)))]
    use crate::abi::AFUT_ERR_TIMEOUT;
    use crate::abi::{AFUT_OK, afut_status_t, afut_t};

    const BUCKETS: usize = 64;

    fn index(fut: *const afut_t) -> usize {
        // Allocations are 16-aligned: skip the bits that never vary.
        ((fut as usize) >> 4) % BUCKETS
    }

    #[cfg(not(all(test, loom)))]
    mod table {
        use crate::lock::Mutex;

        pub(super) struct Bucket {
            pub(super) lock: Mutex<()>,
            pub(super) cv: parking_lot::Condvar,
        }

        #[allow(clippy::declare_interior_mutable_const)]
        const EMPTY: Bucket = Bucket { lock: Mutex::new(()), cv: parking_lot::Condvar::new() };
        pub(super) static TABLE: [Bucket; super::BUCKETS] = [EMPTY; super::BUCKETS];
    }

    /// Blocks until `done()` says the future is done (it also marks the future as waited
    /// on) or the deadline passes.
    #[cfg(not(all(test, loom)))]
    pub(super) fn wait(fut: *const afut_t, deadline: Option<Instant>, done: impl Fn() -> bool) -> afut_status_t {
        let bucket = &table::TABLE[index(fut)];
        let mut g = bucket.lock.lock();
        loop {
            if done() {
                return AFUT_OK;
            }
            match deadline {
                Some(d) if Instant::now() >= d => return AFUT_ERR_TIMEOUT,
                Some(d) => {
                    bucket.cv.wait_until(g.raw(), d);
                }
                None => bucket.cv.wait(g.raw()),
            }
        }
    }

    /// Wakes the waiters of `fut` (and of the futures sharing its bucket).
    #[cfg(not(all(test, loom)))]
    pub(super) fn notify(fut: *const afut_t) {
        let bucket = &table::TABLE[index(fut)];
        drop(bucket.lock.lock());
        bucket.cv.notify_all();
    }

    #[cfg(all(test, loom))]
    loom::lazy_static! {
        static ref TABLE: Vec<(loom::sync::Mutex<()>, loom::sync::Condvar)> =
            (0..BUCKETS).map(|_| (loom::sync::Mutex::new(()), loom::sync::Condvar::new())).collect();
    }

    /// Under loom: the same protocol with loom's mutex and condition variable; a deadline is
    /// treated as "forever" (the model has no clock).
    #[cfg(all(test, loom))]
    pub(super) fn wait(fut: *const afut_t, _deadline: Option<Instant>, done: impl Fn() -> bool) -> afut_status_t {
        let (lock, cv) = &TABLE[index(fut)];
        let mut g = lock.lock().unwrap();
        loop {
            if done() {
                return AFUT_OK;
            }
            g = cv.wait(g).unwrap();
        }
    }

    #[cfg(all(test, loom))]
    pub(super) fn notify(fut: *const afut_t) {
        let (lock, cv) = &TABLE[index(fut)];
        drop(lock.lock().unwrap());
        cv.notify_all();
    }

    #[allow(dead_code)]
    fn _unused(_: afut_status_t) {}
}

/// Keeps cancels and frees that travel through chains of futures in bounds: constant stack
/// at any depth, and an end to cycles.
///
/// A cancel may propagate (a task cancels what it awaits, a gather its children, ...) and a
/// free may release other futures (a gather its children, a task what it awaits, a wrapper
/// the future it mirrors). Done by plain recursion, a chain 1e5 deep overflows any thread's
/// stack. So both recurse only up to [`DEPTH_LIMIT`] levels on a thread, which keeps asyncio's
/// depth-first order for every structure of ordinary depth; deeper work is queued and run by
/// the outermost call on that thread, before it returns.
///
/// A cancel that comes back to a future whose own cancel is still under way on this thread
/// went round a cycle (task A awaits B, B awaits A): that future's behaviour then gets
/// `cancel_again`, which ends the cycle instead of going round it forever (asyncio itself
/// raises RecursionError there).
mod propagation {
    use std::cell::{Cell, RefCell};
    use std::collections::{HashSet, VecDeque};
    use std::ffi::CString;

    use super::{Behaviour, DoneCb, Future, Outcome};
    use crate::futures::state::Callbacks;

    /// How deep cancels and frees recurse on one thread before they are queued.
    const DEPTH_LIMIT: u32 = 64;

    /// What runs after a propagated cancel, with its return value.
    pub(crate) type Then = Box<dyn FnOnce(bool) + Send>;

    /// The fields of a freed future that may own other futures.
    pub(crate) struct Remains {
        pub(crate) _outcome: Option<Outcome>,
        pub(crate) _callbacks: Callbacks<DoneCb>,
        pub(crate) _behaviour: Option<Box<Box<dyn Behaviour>>>,
    }

    struct Deferred {
        target: Future,
        msg: Option<CString>,
        then: Option<Then>,
    }

    thread_local! {
        static CANCEL_DEPTH: Cell<u32> = const { Cell::new(0) };
        /// The futures whose cancel is under way on this thread, outermost first.
        static CANCELLING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
        /// Every future cancelled since the outermost cancel began (only while it runs).
        static ROUND: RefCell<Option<HashSet<usize>>> = const { RefCell::new(None) };
        /// True while the outermost cancel runs queued propagations.
        static DRAINING: Cell<bool> = const { Cell::new(false) };
        static CANCELS: RefCell<VecDeque<Deferred>> = const { RefCell::new(VecDeque::new()) };
        static FREE_DEPTH: Cell<u32> = const { Cell::new(0) };
        static FREES: RefCell<Vec<Remains>> = const { RefCell::new(Vec::new()) };
    }

    /// Runs `cancel(again)` for `fut`, `again` being true when `fut`'s cancel is already under
    /// way on this thread (a cycle). The outermost call also runs every queued propagation.
    pub(super) fn enter(fut: &Future, cancel: impl FnOnce(bool) -> bool) -> bool {
        let key = fut.as_ptr() as usize;
        // Within the depth limit, "again" means exactly "an ancestor in this propagation", so
        // structures of ordinary depth (diamonds included) behave as asyncio's recursion does.
        // Queued propagations cannot see their ancestors: there a future already cancelled in
        // this round counts as met again, so that even a cycle longer than the limit ends.
        let again = CANCELLING.with(|c| c.borrow().contains(&key))
            || (DRAINING.get() && ROUND.with(|r| r.borrow().as_ref().is_some_and(|set| set.contains(&key))));
        let depth = CANCEL_DEPTH.get();
        if depth == 0 {
            ROUND.with(|r| *r.borrow_mut() = Some(HashSet::new()));
        }
        ROUND.with(|r| {
            if let Some(set) = r.borrow_mut().as_mut() {
                set.insert(key);
            }
        });
        CANCEL_DEPTH.set(depth + 1);
        CANCELLING.with(|c| c.borrow_mut().push(key));
        let result = cancel(again);
        CANCELLING.with(|c| c.borrow_mut().pop());
        if depth == 0 {
            // The outermost cancel: run what was queued, each from a shallow stack again.
            DRAINING.set(true);
            CANCEL_DEPTH.set(1);
            while let Some(d) = CANCELS.with(|q| q.borrow_mut().pop_front()) {
                let r = d.target.cancel(d.msg);
                if let Some(then) = d.then {
                    then(r);
                }
            }
            DRAINING.set(false);
            ROUND.with(|r| r.borrow_mut().take());
        }
        CANCEL_DEPTH.set(depth);
        result
    }

    pub(super) fn propagate(target: &Future, msg: Option<CString>, then: Option<Then>) {
        if CANCEL_DEPTH.get() >= DEPTH_LIMIT {
            CANCELS.with(|q| q.borrow_mut().push_back(Deferred { target: target.clone(), msg, then }));
            return;
        }
        let r = target.cancel(msg);
        if let Some(then) = then {
            then(r);
        }
    }

    /// Drops what a freed future owned, queueing it when frees are already deep on this
    /// thread; the outermost free drains the queue.
    pub(super) fn release(remains: Remains) {
        let depth = FREE_DEPTH.get();
        if depth >= DEPTH_LIMIT {
            FREES.with(|q| q.borrow_mut().push(remains));
            return;
        }
        FREE_DEPTH.set(depth + 1);
        drop(remains);
        if depth == 0 {
            while let Some(r) = FREES.with(|q| q.borrow_mut().pop()) {
                drop(r);
            }
        }
        FREE_DEPTH.set(depth);
    }
}

/// Makes an owned copy of a C message (NULL stays None).
pub(crate) fn copy_message(msg: Option<&CStr>) -> Option<CString> {
    msg.map(CStr::to_owned)
}

impl HasHandle for Future {
    fn handle(&self) -> *mut afut_t {
        self.as_ptr()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The state machine without an event loop: a [`FakeLoop`] stands in for the runtime and
    //! records what a future hands it. No test here makes a system call (Miri runs them all).

    use super::*;
    use crate::lock::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// A pending future with one done-callback is one allocation of at most 96 bytes from
    /// malloc's point of view (its request, plus malloc's 8-byte header, rounded to 16):
    /// `FutureInner`, counts included, must stay within 88 bytes.
    #[test]
    fn a_future_fits_in_one_96_byte_malloc_chunk() {
        let request = std::mem::size_of::<FutureInner>();
        assert!(request <= 88, "FutureInner grew: the allocation asks for {request} bytes");
    }

    /// A loop that hands each completion to whichever thread pops it (a dispatching thread).
    struct HandOff(std::sync::Mutex<Vec<Dispatch>>);

    impl LoopLink for HandOff {
        fn schedule_dispatch(&self, completed: Completed) {
            self.0.lock().unwrap().push(completed.publish());
        }
        fn schedule_late(&self, _: &Future, cb: DoneCb) -> Result<(), (afut_status_t, DoneCb)> {
            Err((AFUT_ERR_LOOP_CLOSED, cb))
        }
        fn is_running_on_this_thread(&self) -> bool {
            false
        }
        fn report(&self, _: &CStr, _: Option<&FutureInner>, _: Option<&afut_exception_t>) {}
        fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
            self
        }
    }

    /// The completing thread's last release races the dispatch on another thread, which
    /// holds the future's reserve: whichever comes second destroys the future, and neither
    /// touches it after the other may have. With real threads, so that Miri (random
    /// preemption) and ThreadSanitizer see a use after free if there is one.
    #[test]
    fn last_release_races_the_dispatch() {
        for _ in 0..if cfg!(miri) { 30 } else { 2000 } {
            let lp = Arc::new(HandOff(std::sync::Mutex::new(Vec::new())));
            let fut = Future::new(Some(lp.clone()));
            let ran = Arc::new(AtomicUsize::new(0));
            let r = ran.clone();
            fut.add_done_callback(DoneCallback::rust(1, move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            }))
            .map_err(|_| ())
            .unwrap();
            let completer = std::thread::spawn(move || {
                fut.set_result(Owned::borrowed(ptr::null_mut())).map_err(|_| ()).unwrap();
                drop(fut);
            });
            let l2 = lp.clone();
            let dispatcher = std::thread::spawn(move || {
                loop {
                    let d = l2.0.lock().unwrap().pop();
                    if let Some(d) = d {
                        let mut run = d.run();
                        while let Some(cb) = run.next() {
                            cb.run(run.future());
                        }
                        break;
                    }
                    std::thread::yield_now();
                }
            });
            completer.join().unwrap();
            dispatcher.join().unwrap();
            assert_eq!(ran.load(Ordering::SeqCst), 1);
        }
    }

    // ----- test doubles -----

    /// A loop that queues what `schedule_dispatch` and `schedule_late` get (for [`FakeLoop::run`] to run later) and
    /// records each call and each report.
    #[derive(Default)]
    struct FakeLoop {
        closed: AtomicBool,
        running_here: AtomicBool,
        /// The number of callbacks of each `schedule_dispatch` / `schedule_late` call, in order.
        calls: Mutex<Vec<usize>>,
        queue: Mutex<Vec<(Future, DoneCb)>>,
        /// (message, exception code, the future's tag during the report).
        reports: Mutex<Vec<(String, i32, u64)>>,
    }

    impl FakeLoop {
        fn new() -> Arc<FakeLoop> {
            Arc::new(FakeLoop::default())
        }

        fn link(self: &Arc<Self>) -> Option<Arc<dyn LoopLink>> {
            Some(self.clone())
        }

        /// Runs the queued callbacks, in order, as a loop iteration would.
        fn run(&self) -> usize {
            let batch = std::mem::take(&mut *self.queue.lock());
            let n = batch.len();
            for (fut, cb) in batch {
                cb.run(&fut);
            }
            n
        }
    }

    impl LoopLink for FakeLoop {
        fn schedule_dispatch(&self, completed: Completed) {
            if self.closed.load(Ordering::Acquire) {
                // Refused: dropped unrun, as the real loop does.
                drop(completed);
                return;
            }
            let run = completed.publish().run();
            let fut = run.future().clone();
            let callbacks: Vec<DoneCb> = run.collect();
            self.calls.lock().push(callbacks.len());
            self.queue.lock().extend(callbacks.into_iter().map(|cb| (fut.clone(), cb)));
        }

        fn schedule_late(&self, fut: &Future, cb: DoneCb) -> Result<(), (afut_status_t, DoneCb)> {
            if self.closed.load(Ordering::Acquire) {
                return Err((AFUT_ERR_LOOP_CLOSED, cb));
            }
            self.calls.lock().push(1);
            self.queue.lock().push((fut.clone(), cb));
            Ok(())
        }

        fn is_running_on_this_thread(&self) -> bool {
            self.running_here.load(Ordering::Acquire)
        }

        fn report(&self, message: &CStr, future: Option<&FutureInner>, exception: Option<&afut_exception_t>) {
            let tag = future.map_or(0, FutureInner::tag);
            let code = exception.map_or(0, |e| e.code);
            self.reports.lock().push((message.to_string_lossy().into_owned(), code, tag));
        }

        fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
            self
        }
    }

    /// A C destructor that counts its calls in the `AtomicUsize` it is given.
    unsafe extern "C" fn count_free(p: *mut c_void) {
        // SAFETY: every test passes a pointer to a live AtomicUsize.
        unsafe { &*(p as *const AtomicUsize) }.fetch_add(1, Ordering::Relaxed);
    }

    /// A C done-callback that counts its calls in the `AtomicUsize` it is given.
    unsafe extern "C" fn count_run(_fut: *mut afut_t, p: *mut c_void) {
        // SAFETY: as for count_free.
        unsafe { &*(p as *const AtomicUsize) }.fetch_add(1, Ordering::Relaxed);
    }

    /// Another C done-callback, so that `(func, userdata)` pairs can differ by function.
    unsafe extern "C" fn count_run_twice(_fut: *mut afut_t, p: *mut c_void) {
        // SAFETY: as for count_free.
        unsafe { &*(p as *const AtomicUsize) }.fetch_add(2, Ordering::Relaxed);
    }

    fn ptr(counter: &AtomicUsize) -> *mut c_void {
        counter as *const AtomicUsize as *mut c_void
    }

    fn counted(counter: &AtomicUsize) -> Owned {
        Owned::new(ptr(counter), Some(count_free))
    }

    fn n(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }

    /// A Rust done-callback that appends `id` to `log`.
    fn logging(id: u32, log: &Arc<Mutex<Vec<u32>>>) -> DoneCb {
        let log = log.clone();
        DoneCb::rust(id as u64, move |_| log.lock().push(id))
    }

    fn exception(code: i32, message: Option<&CStr>, detail: Owned) -> Exception {
        Exception { code, message: copy_message(message), detail }
    }

    // ----- states -----

    #[test]
    fn set_result_completes_once_and_gives_a_second_value_back() {
        let (v1, v2) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let f = Future::new(None);
        assert!(!f.is_done() && !f.is_cancelled());
        assert_eq!(f.result().err(), Some(AFUT_ERR_INVALID_STATE));
        assert_eq!(f.exception().err(), Some(AFUT_ERR_INVALID_STATE));
        assert!(f.set_result(counted(&v1)).is_ok());
        assert!(f.is_done() && !f.is_cancelled());
        assert_eq!(f.result().ok(), Some(ptr(&v1)));
        assert!(matches!(f.exception(), Ok(ExceptionView::NoException)));
        let (status, back) = f.set_result(counted(&v2)).expect_err("a done future refuses a value");
        assert_eq!(status, AFUT_ERR_INVALID_STATE);
        assert_eq!(back.ptr(), ptr(&v2), "the refused value comes back");
        back.disarm();
        let (status, _) = f.set_exception(exception(5, None, Owned::borrowed(std::ptr::null_mut()))).err().unwrap();
        assert_eq!(status, AFUT_ERR_INVALID_STATE);
        assert!(!f.cancel(None), "cancel on a done future is false");
        assert_eq!(f.result().ok(), Some(ptr(&v1)), "the outcome did not change");
        assert_eq!((n(&v1), n(&v2)), (0, 0));
        drop(f);
        assert_eq!((n(&v1), n(&v2)), (1, 0), "the value is freed with the future, once");
    }

    #[test]
    fn cancel_is_final_and_keeps_its_message() {
        let f = Future::new(None);
        assert!(f.cancel(Some(c"bye".to_owned())));
        assert!(f.is_done() && f.is_cancelled());
        assert_eq!(f.cancel_message_owned().as_deref(), Some(c"bye"));
        let borrowed = f.cancel_message();
        assert!(!f.cancel(Some(c"again".to_owned())), "a second cancel is false");
        assert_eq!(f.cancel_message(), borrowed, "the message pointer is stable");
        assert_eq!(f.cancel_message_owned().as_deref(), Some(c"bye"));
        assert_eq!(f.result().err(), Some(AFUT_ERR_CANCELLED));
        assert_eq!(f.exception().err(), Some(AFUT_ERR_CANCELLED));
        assert!(f.copy_exception().is_none());
        let (status, back) = f.set_result(Owned::borrowed(std::ptr::null_mut())).err().unwrap();
        assert_eq!(status, AFUT_ERR_INVALID_STATE);
        back.disarm();
        let g = Future::new(None);
        assert!(g.cancel(None));
        assert!(g.cancel_message().is_null() && g.cancel_message_owned().is_none());
    }

    #[test]
    fn an_exception_is_read_back_with_its_message_and_detail() {
        let detail = AtomicUsize::new(0);
        let f = Future::new(None);
        assert!(f.set_exception(exception(7, Some(c"boom"), counted(&detail))).is_ok());
        assert_eq!(f.result().err(), Some(AFUT_ERR_EXCEPTION));
        let Ok(ExceptionView::Exception(e)) = f.exception() else { panic!("an exception") };
        assert_eq!(e.code, 7);
        // SAFETY: the message is owned by `f`, alive here.
        assert_eq!(unsafe { CStr::from_ptr(e.message) }, c"boom");
        assert_eq!(e.detail, ptr(&detail));
        let copy = f.copy_exception().expect("a copy");
        assert_eq!((copy.code, copy.message.as_deref(), copy.detail.ptr()), (7, Some(c"boom"), ptr(&detail)));
        drop(copy);
        assert_eq!(n(&detail), 0, "the copy borrows the detail");
        drop(f);
        assert_eq!(n(&detail), 1, "the detail is freed with the future, once");
    }

    // ----- callbacks -----

    #[test]
    fn callbacks_go_to_the_loop_as_one_run_in_order_never_inline() {
        let lp = FakeLoop::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let f = Future::new(lp.link());
        for id in 1..=3 {
            assert!(f.add_done_callback(logging(id, &log)).is_ok());
        }
        assert!(lp.calls.lock().is_empty(), "nothing is scheduled while pending");
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        assert!(log.lock().is_empty(), "no callback runs inside set_result");
        assert_eq!(*lp.calls.lock(), [3], "one schedule_dispatch with the three callbacks");
        assert_eq!(lp.run(), 3);
        assert_eq!(*log.lock(), [1, 2, 3], "registration order");
        // Added once done: scheduled at once, as its own run, still never inline.
        assert!(f.add_done_callback(logging(4, &log)).is_ok());
        assert_eq!(*log.lock(), [1, 2, 3]);
        assert_eq!(*lp.calls.lock(), [3, 1]);
        lp.run();
        assert_eq!(*log.lock(), [1, 2, 3, 4]);
    }

    #[test]
    fn a_closed_loop_refuses_the_callbacks_and_each_userdata_is_freed_unrun() {
        let lp = FakeLoop::new();
        let (runs, frees) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let f = Future::new(lp.link());
        let cb = || DoneCb::c(count_run, Owned::new(ptr(&runs), None));
        assert!(f.add_done_callback(DoneCb::c(count_run, counted(&frees))).is_ok());
        assert!(f.add_done_callback(cb()).is_ok());
        lp.closed.store(true, Ordering::Release);
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok(), "completing still works");
        assert_eq!((n(&runs), n(&frees)), (0, 1), "dropped unrun, the userdata freed once");
        // Adding to a done future of a closed loop fails: the callback comes back.
        let (status, back) = f.add_done_callback(DoneCb::c(count_run, counted(&frees))).err().unwrap();
        assert_eq!(status, AFUT_ERR_LOOP_CLOSED);
        back.disarm();
        assert_eq!((n(&runs), n(&frees)), (0, 1), "a refused callback's userdata stays the caller's");
    }

    #[test]
    fn a_loopless_future_runs_its_callbacks_in_the_completing_thread_in_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let f = Future::new(None);
        assert!(f.add_done_callback(logging(1, &log)).is_ok());
        assert!(f.add_done_callback(logging(2, &log)).is_ok());
        let g = f.clone();
        std::thread::spawn(move || g.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok()).join().unwrap();
        assert_eq!(*log.lock(), [1, 2], "ran inside set_result, on the completing thread");
        assert!(f.add_done_callback(logging(3, &log)).is_ok());
        assert_eq!(*log.lock(), [1, 2, 3], "added once done: runs at once");
    }

    #[test]
    fn remove_done_callback_removes_every_equal_entry_and_frees_each_once() {
        // One value per function, as C passes them: Rust does not promise that two
        // reifications of one function compare equal (Miri makes them differ), C does.
        let (run, run_twice): (DoneFn, DoneFn) = (count_run, count_run_twice);
        // The userdata is the counter the callback bumps (no destructor here; frees below).
        let (a, b) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let f = Future::new(None);
        let entry = |func: DoneFn, data: &AtomicUsize| DoneCb::c(func, Owned::new(ptr(data), None));
        assert!(f.add_done_callback(entry(run, &a)).is_ok());
        assert!(f.add_done_callback(entry(run, &b)).is_ok());
        assert!(f.add_done_callback(entry(run, &a)).is_ok());
        assert!(f.add_done_callback(entry(run_twice, &a)).is_ok());
        assert_eq!(f.remove_done_callback(run, ptr(&a)), 2, "both (count_run, a) entries");
        assert_eq!(f.remove_done_callback(run, ptr(&a)), 0);
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        assert_eq!((n(&a), n(&b)), (2, 1), "(count_run, b) ran once, (count_run_twice, a) once");
        assert_eq!(f.remove_done_callback(run, ptr(&b)), 0, "nothing to remove once done");
        // Removed entries free their userdata once, at removal.
        let frees = AtomicUsize::new(0);
        let g = Future::new(None);
        assert!(g.add_done_callback(DoneCb::c(run, counted(&frees))).is_ok());
        assert!(g.add_done_callback(DoneCb::c(run, counted(&frees))).is_ok());
        assert_eq!(g.remove_done_callback(run, ptr(&frees)), 2);
        assert_eq!(n(&frees), 2);
        drop(g);
        assert_eq!(n(&frees), 2);
    }

    #[test]
    fn remove_token_removes_only_that_internal_callback() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let f = Future::new(None);
        for id in 1..=3 {
            assert!(f.add_done_callback(logging(id, &log)).is_ok());
        }
        assert!(f.remove_token(2));
        assert!(!f.remove_token(2));
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        assert_eq!(*log.lock(), [1, 3]);
    }

    #[test]
    fn callbacks_left_on_a_freed_future_free_their_userdata_unrun() {
        let (runs, frees) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let f = Future::new(None);
        assert!(f.add_done_callback(DoneCb::c(count_run, counted(&frees))).is_ok());
        assert!(f.add_done_callback(DoneCb::c(count_run, Owned::new(ptr(&runs), None))).is_ok());
        drop(f);
        assert_eq!((n(&runs), n(&frees)), (0, 1));
    }

    // ----- the unretrieved mark -----

    fn failed(lp: &Arc<FakeLoop>) -> Future {
        let f = Future::new(lp.link());
        assert!(f.set_exception(exception(9, Some(c"lost"), Owned::borrowed(std::ptr::null_mut()))).is_ok());
        f
    }

    #[test]
    fn an_unretrieved_exception_is_reported_once_when_the_last_reference_goes() {
        let lp = FakeLoop::new();
        let f = failed(&lp);
        let second = f.clone();
        drop(f);
        assert!(lp.reports.lock().is_empty(), "not while a reference is left");
        drop(second);
        let reports = lp.reports.lock().clone();
        assert_eq!(reports, [("Future exception was never retrieved".to_string(), 9, TAG_FINALIZING)]);
    }

    #[test]
    fn reading_or_cancelling_counts_as_retrieving() {
        let lp = FakeLoop::new();
        let f = failed(&lp);
        assert_eq!(f.result().err(), Some(AFUT_ERR_EXCEPTION));
        drop(f);
        let f = failed(&lp);
        assert!(f.exception().is_ok());
        drop(f);
        let f = failed(&lp);
        assert!(f.copy_exception().is_some());
        drop(f);
        let f = failed(&lp);
        assert!(!f.cancel(None), "cancel is false on a done future, but clears the mark");
        drop(f);
        assert!(lp.reports.lock().is_empty(), "{:?}", *lp.reports.lock());
        // Neither a result nor a cancellation is ever reported, nor a loop-less future.
        let f = Future::new(lp.link());
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        drop(f);
        let f = Future::new(lp.link());
        assert!(f.cancel(None));
        drop(f);
        let f = Future::new(None);
        assert!(f.set_exception(exception(3, None, Owned::borrowed(std::ptr::null_mut()))).is_ok());
        drop(f);
        assert!(lp.reports.lock().is_empty());
    }

    #[test]
    fn a_mirror_takes_over_the_exception_and_its_report() {
        let lp = FakeLoop::new();
        let source = Future::new(None);
        assert!(source.set_exception(exception(4, Some(c"deep"), Owned::borrowed(std::ptr::null_mut()))).is_ok());
        let wrapper = Future::new(lp.link());
        wrapper.mirror(&source);
        assert!(wrapper.is_done() && !wrapper.is_cancelled());
        drop(wrapper);
        assert_eq!(lp.reports.lock().len(), 1, "the wrapper reports the unread exception");
        assert_eq!(lp.reports.lock()[0].1, 4);
        // A wrapper of a wrapper reads through both; reading it counts for the chain.
        let value = AtomicUsize::new(0);
        let first = Future::new(None);
        assert!(first.set_result(Owned::new(ptr(&value), None)).is_ok());
        let middle = Future::new(None);
        middle.mirror(&first);
        let last = Future::new(lp.link());
        last.mirror(&middle);
        assert_eq!(last.result().ok(), Some(ptr(&value)), "the value is borrowed from the first");
        assert_eq!(last.describe(), format!("<Future finished result={:#x}>", ptr(&value) as usize));
        // A cancelled source is copied, message included.
        let cancelled = Future::new(None);
        assert!(cancelled.cancel(Some(c"stop".to_owned())));
        let copy = Future::new(None);
        copy.mirror(&cancelled);
        assert_eq!(copy.cancel_message_owned().as_deref(), Some(c"stop"));
        // A pending source, or a done destination, changes nothing.
        let pending = Future::new(None);
        let untouched = Future::new(None);
        untouched.mirror(&pending);
        assert!(!untouched.is_done());
        copy.mirror(&first);
        assert!(copy.is_cancelled());
    }

    // ----- wait -----

    #[test]
    fn wait_with_a_timeout_on_a_loopless_future() {
        let f = Future::new(None);
        assert_eq!(f.wait(f64::NAN), AFUT_ERR_INVALID_ARGUMENT);
        assert_eq!(f.wait(0.0), AFUT_ERR_TIMEOUT, "0 polls");
        assert_eq!(f.wait(-1.0), AFUT_ERR_TIMEOUT, "a negative timeout acts as 0");
        let start = clock::now();
        assert_eq!(f.wait(0.02), AFUT_ERR_TIMEOUT);
        assert!(clock::now() - start >= 0.02, "never times out early");
        let g = f.clone();
        let completer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            g.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok()
        });
        assert_eq!(f.wait(f64::INFINITY), AFUT_OK, "woken by the completion");
        assert!(completer.join().unwrap());
        assert_eq!(f.wait(0.0), AFUT_OK, "a done future answers at once");
    }

    #[test]
    fn wait_refuses_the_thread_running_the_loop() {
        let lp = FakeLoop::new();
        let f = Future::new(lp.link());
        lp.running_here.store(true, Ordering::Release);
        assert_eq!(f.wait(f64::INFINITY), AFUT_ERR_WRONG_THREAD);
        lp.running_here.store(false, Ordering::Release);
        assert_eq!(f.wait(0.0), AFUT_ERR_TIMEOUT);
    }

    // ----- describe -----

    #[test]
    fn describe_reads_like_asyncio_repr() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let f = Future::new(None);
        assert_eq!(f.describe(), "<Future pending>");
        assert!(f.add_done_callback(logging(1, &log)).is_ok());
        assert!(f.add_done_callback(logging(2, &log)).is_ok());
        assert_eq!(f.describe(), "<Future pending cb=[2]>");
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        assert_eq!(f.describe(), "<Future finished result=NULL>");
        let f = Future::new(None);
        assert!(f.set_result(Owned::borrowed(std::ptr::without_provenance_mut(0x1f2e))).is_ok());
        assert_eq!(f.describe(), "<Future finished result=0x1f2e>");
        let f = Future::new(None);
        assert!(f.set_exception(exception(5, Some(c"boom"), Owned::borrowed(std::ptr::null_mut()))).is_ok());
        assert_eq!(f.describe(), "<Future finished exception=code 5: boom>");
        let f = Future::new(None);
        assert!(f.set_exception(exception(6, None, Owned::borrowed(std::ptr::null_mut()))).is_ok());
        assert_eq!(f.describe(), "<Future finished exception=code 6>");
        let f = Future::new(None);
        assert!(f.cancel(None));
        assert_eq!(f.describe(), "<Future cancelled>");
    }
}
