//! The event loop: a ready queue run in batches, a timer heap, and the wakeup that lets any
//! thread hand it work.
//!
//! One iteration (asyncio's `_run_once`, SEMANTICS.md L2): wait for work (unless some is ready),
//! consume the wakeup signal, move due timers to the ready queue, take the whole ready queue
//! as this iteration's batch and run it. What the batch schedules lands in the (new) ready
//! queue and runs in the next iteration.
//!
//! The ready queues are lock-free (`runtime::queue`): the running thread's own queue and a
//! stack other threads push onto. `sched` protects the handle table and the timers. It is held
//! only to push or take entries, never while C code runs: callbacks, userdata destructors and
//! the exception handler all run with no lock held.

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use crate::lock::Mutex;

use crate::abi::*;
use crate::callback::Handler;
use crate::callback::{Callback, Hook, Owned};
use crate::clock;
use crate::futures::done::next_token;
use crate::futures::future::{Completed, Dispatch, DoneCb, Future, FutureInner, LoopLink, WeakFuture};
use crate::runtime::handles::{Handle, HandleTable};
use crate::runtime::queue::{Pushed, Queues};
use crate::runtime::report::write_to_stderr;
use crate::runtime::timers::TimerHeap;
use crate::runtime::wakeup::Wakeup;
use crate::runtime::watchers::{AddError, Kind, Watcher, Watchers};

/// Debug mode reports callbacks slower than this (asyncio `slow_callback_duration`).
const SLOW_CALLBACK_S: f64 = 0.1;

pub(crate) enum Item {
    /// A `call_soon` / due `call_at` entry; skipped if its handle was cancelled meanwhile.
    Call(Handle),
    /// A completed future: its done-callbacks, in registration order (one contiguous run,
    /// asyncio F5).
    Done(Dispatch),
    /// A done-callback added to a future that was already done (boxed: rare).
    Late(Box<(Future, DoneCb)>),
    /// An fd watcher whose fd was ready; skipped if it was removed or replaced meanwhile.
    Io(Arc<Watcher>),
}

impl From<Dispatch> for Item {
    fn from(d: Dispatch) -> Item {
        Item::Done(d)
    }
}

#[derive(Default)]
struct Sched {
    handles: HandleTable,
    timers: TimerHeap,
}

pub(crate) struct LoopInner {
    /// The ready queues and the record of which thread runs the loop (its token: 0 for none).
    queue: Queues<Item>,
    sched: Mutex<Sched>,
    /// The timer heap's size, published under `sched` whenever it changes: an iteration
    /// takes the lock for timers only when there are some.
    timer_count: AtomicUsize,
    wake: Wakeup,
    /// The fd watchers (see `runtime::watchers`).
    io: Watchers,
    stopping: AtomicBool,
    /// Set once, by `close`, while it holds `sched`. Submissions to the handle table and the
    /// timers read it with `sched` held, so each one is ordered against the close by the lock:
    /// it either got in before (and the close then drops its entry) or sees the flag (and gets
    /// its callback back). The ready queues have their own closed state (`Queues::close`). Readers
    /// without the lock (`is_closed`, `enter`, `timeout_ms`) only answer "closed yet?", and
    /// a run that claims `running` after the close released it is ordered after the store
    /// by that claim (the close stores the flag before its `RunGuard` releases `running`).
    closed: AtomicBool,
    freed: AtomicBool,
    debug: AtomicBool,
    poisoned: AtomicBool,
    /// A host asked for the fd or installed a wakeup hook: keep the fd's readiness exact.
    host_mode: AtomicBool,
    /// Incremented around each run_until_complete so a stale stop callback is inert (B14).
    run_generation: AtomicU64,
    handler: Mutex<Option<Arc<Handler>>>,
    wakeup_hook: Mutex<Option<Arc<Hook>>>,
    /// Futures told when the loop closes (tasks; combinators and wrappers, to let go of inputs
    /// that never complete), held weakly.
    watched: Mutex<Vec<WeakFuture>>,
    /// `REAL_CLOCK`, or a virtual clock (`afut_loop_set_virtual_clock`): `VIRTUAL_MANUAL`,
    /// `VIRTUAL_AUTO`.
    clock_mode: AtomicU8,
    /// The virtual clock's time (`f64` bits); written under `sched`.
    virtual_now: AtomicU64,
    /// Jobs of `run_in_executor` in flight ([`ClockHold`]): auto-advance waits for them.
    clock_holds: AtomicUsize,
}

const REAL_CLOCK: u8 = 0;
const VIRTUAL_MANUAL: u8 = 1;
const VIRTUAL_AUTO: u8 = 2;

/// Keeps an auto-advancing virtual clock from jumping while a job of `run_in_executor` runs
/// (tokio does the same for `spawn_blocking`). Released through the loop's ready queue, so the
/// release is itself ready work: the loop runs what the job's completion queued before it jumps.
pub(crate) struct ClockHold(Loop);

impl Drop for ClockHold {
    fn drop(&mut self) {
        let l = self.0.clone();
        let release = Callback::rust(move || {
            l.clock_holds.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err((_, cb)) = self.0.schedule(release, None) {
            // A closed loop: release at once.
            drop(cb);
            self.0.clock_holds.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A reference to a loop.
#[derive(Clone)]
pub(crate) struct Loop(pub(crate) Arc<LoopInner>);

impl std::ops::Deref for Loop {
    type Target = LoopInner;

    fn deref(&self) -> &LoopInner {
        &self.0
    }
}

/// How long to wait for the next timer, capped by `max_wait_ms` (-1: no cap); the ready queue
/// is known to be empty. With a virtual clock: 0 when a timer is due or auto-advance will jump
/// to one, else no timer limit (waiting in real time never makes a virtual timer due: only
/// `advance_time` or work from another thread, which wakes the wait, can).
fn timers_budget(inner: &LoopInner, s: &mut Sched, max_wait_ms: i32) -> i32 {
    let Sched { timers, handles, .. } = s;
    let next = timers.next_deadline(handles);
    let budget = match inner.virtual_time() {
        None => next.and_then(clock::ms_until),
        Some(now) => match next {
            Some(d) if d <= now || (d.is_finite() && inner.may_jump()) => Some(0),
            _ => None,
        },
    };
    match budget {
        None => max_wait_ms,
        Some(t) if max_wait_ms < 0 => t,
        Some(t) => t.min(max_wait_ms),
    }
}

/// The slow-callback report of debug mode (asyncio `slow_callback_duration`), timed on the
/// loop's clock as asyncio does (a virtual clock included).
#[cold]
fn slow_callback(l: &LoopInner, started: f64, what: String) {
    let took = l.time() - started;
    if took >= SLOW_CALLBACK_S {
        let msg = std::ffi::CString::new(format!("Executing {what} took {took:.3} seconds")).unwrap_or_default();
        l.deliver_report(&msg, None, None);
    }
}

/// Marks the loop as owned by this thread for a run (or a close); released on drop, also
/// when a panic unwinds through the run.
struct RunGuard<'a>(&'a LoopInner);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Release);
        }
        self.0.queue.release();
    }
}

impl Loop {
    pub(crate) fn new() -> std::io::Result<Loop> {
        Ok(Loop(Arc::new(LoopInner {
            queue: Queues::default(),
            sched: Mutex::new(Sched::default()),
            timer_count: AtomicUsize::new(0),
            wake: Wakeup::new()?,
            io: Watchers::default(),
            stopping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            freed: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            host_mode: AtomicBool::new(false),
            run_generation: AtomicU64::new(0),
            handler: Mutex::new(None),
            wakeup_hook: Mutex::new(None),
            watched: Mutex::new(Vec::new()),
            clock_mode: AtomicU8::new(REAL_CLOCK),
            virtual_now: AtomicU64::new(0),
            clock_holds: AtomicUsize::new(0),
        })))
    }

    /// The loop a future is bound to (None: a loop-less future).
    pub(crate) fn of(fut: &Future) -> Option<Loop> {
        let link = fut.event_loop()?.clone();
        Some(Loop(link.into_any().downcast::<LoopInner>().ok()?))
    }

    /// This loop as a future sees it.
    pub(crate) fn link(&self) -> Arc<dyn LoopLink> {
        self.0.clone()
    }

    /// True if `fut` is bound to this loop.
    pub(crate) fn owns(&self, fut: &Future) -> bool {
        fut.event_loop().is_some_and(|l| std::ptr::addr_eq(Arc::as_ptr(l), Arc::as_ptr(&self.0)))
    }

    fn downgrade(&self) -> Weak<LoopInner> {
        Arc::downgrade(&self.0)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.0.queue.runner() != 0
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.0.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn poison(&self) {
        self.0.poisoned.store(true, Ordering::Release);
    }

    pub(crate) fn set_debug(&self, on: bool) {
        self.0.debug.store(on, Ordering::Release);
    }

    // ----- scheduling (any thread) -----

    /// `call_soon` (`when == None`) or `call_at`. On failure the callback comes back unrun.
    pub(crate) fn schedule(&self, cb: Callback, when: Option<f64>) -> Result<Handle, (afut_status_t, Callback)> {
        let mut s = self.0.sched.lock();
        if self.0.closed_under(&s) {
            return Err((AFUT_ERR_LOOP_CLOSED, cb));
        }
        let handle = s.handles.insert(cb, when.is_some());
        match when {
            None => {
                drop(s);
                // A close that came in between already freed the callback (with the handle
                // table); a refused item then only carries the dead handle.
                if let Ok(Pushed::Remote) = self.0.queue.push(Item::Call(handle)) {
                    self.notify();
                }
            }
            Some(w) => {
                // A timer is not work until it is due: it never raises the signal. Only a
                // new earliest deadline matters, and only to a loop or host waiting on another
                // thread: arm the timerfd for it, which wakes an `epoll_wait` in progress and
                // makes a host's fd readable on time. (The running thread re-arms at the end
                // of its iteration.) Armed under `sched` so that arms never reorder.
                let Sched { timers, handles, .. } = &mut *s;
                // (The heap's head is looked at only when somebody waits.)
                let wake = w != f64::INFINITY
                    && self.waiter_elsewhere()
                    && timers.next_deadline(handles).is_none_or(|d| w < d);
                timers.push(w, handle);
                self.0.timer_count.store(timers.len(), Ordering::Relaxed);
                if wake {
                    match self.virtual_time() {
                        None => self.0.wake.arm_timer(Some(w)),
                        // A virtual timer is work once due; and a loop running on another
                        // thread with auto-advance must wake to jump to it.
                        Some(now) if w <= now || (self.may_jump() && self.is_running()) => {
                            drop(s);
                            self.signal();
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Ok(handle)
    }

    /// Registers a future whose behaviour must hear of the loop's close (a task: it can never
    /// run again then). Held weakly; dead entries are pruned as the list grows. Then the
    /// behaviour's `loop_closed` runs at the close, or here at once if the loop is closed
    /// already (a close takes the list only after it marked the loop closed, and this looks at
    /// that mark under the list's lock, so every future hears of the close exactly once).
    pub(crate) fn watch_close(&self, fut: &Future) {
        let closed_already = {
            let mut w = self.0.watched.lock();
            if self.is_closed() {
                true
            } else {
                if w.len() == w.capacity() {
                    w.retain(|f| !f.is_dead());
                }
                w.push(fut.downgrade());
                false
            }
        };
        if closed_already && let Some(b) = fut.behaviour() {
            b.loop_closed(fut);
        }
    }

    /// `afut_loop_cancel`: true iff the callback had not started; it is dropped (its
    /// userdata freed) after the lock is released.
    pub(crate) fn cancel(&self, handle: Handle) -> bool {
        let (entry, settle) = {
            let mut s = self.0.sched.lock();
            let Some(entry) = s.handles.remove(handle) else { return false };
            let settle = entry.is_timer
                && self.0.host_mode.load(Ordering::Acquire)
                && self.virtual_time().is_some()
                && self.0.wake.is_signalled();
            if entry.is_timer {
                let Sched { timers, handles, .. } = &mut *s;
                timers.note_cancelled(handles);
                self.0.timer_count.store(timers.len(), Ordering::Relaxed);
                // The kernel timer may be armed for the deadline just cancelled: left so, it
                // would expire and make an idle host's fd readable with nothing to do. Point
                // it at the next live deadline instead (re-arming also clears an expiry not
                // yet read). Armed under `sched`, like every arm, so arms never reorder.
                let armed = self.0.wake.armed_deadline();
                if armed != f64::INFINITY {
                    let next = timers.next_deadline(handles);
                    if next.is_none_or(|d| d > armed) {
                        self.0.wake.arm_timer(next);
                    }
                }
            }
            (entry, settle)
        };
        drop(entry);
        if settle {
            self.settle_host_signal();
        }
        true
    }

    /// Host mode on a virtual clock, after a timer's cancel. A virtual timer that was due when
    /// it was scheduled (or when the clock was advanced) raised the signal; if it was all the
    /// work there was, the fd would stay readable for nothing until the next `run_once`.
    /// Between runs (this thread holds the loop for the moment: a `run_once` starting meanwhile
    /// waits), the signal is cleared and raised again if work is left: the check a host-mode
    /// run makes at its end. A run in progress makes that check itself. The relay of pollers
    /// without an fd of their own also raises the signal for ready watched fds, which this
    /// cannot tell apart, so there it is left as it is (documented at `afut_loop_fd`).
    fn settle_host_signal(&self) {
        let wake = &self.0.wake;
        if !wake.has_own_fd() || !self.0.queue.claim_briefly() {
            return;
        }
        let _guard = RunGuard(&self.0);
        wake.clear();
        let due = {
            let mut s = self.0.sched.lock();
            let Sched { timers, handles, .. } = &mut *s;
            self.arm_for_host(timers.next_deadline(handles))
        };
        // A read-modify-write look at the queue: a push it misses raises the signal anew.
        if due || !self.0.queue.look_before_sleep() || (wake.watching() && wake.poller_ready()) {
            self.signal();
        }
    }

    /// `afut_loop_stop`: the current batch finishes, then the run returns.
    pub(crate) fn stop(&self) {
        self.0.stopping.store(true, Ordering::Release);
        self.notify();
    }

    // ----- host integration -----

    pub(crate) fn fd(&self) -> i32 {
        if !self.0.host_mode.swap(true, Ordering::AcqRel) {
            let work = {
                let mut s = self.0.sched.lock();
                let Sched { timers, handles, .. } = &mut *s;
                let due = self.arm_for_host(timers.next_deadline(handles));
                !self.0.queue.is_empty_hint() || due
            };
            if work {
                self.signal();
            }
        }
        // Pollers without an fd of their own: the relay (see `Wakeup::enter_host_mode`).
        self.0.wake.enter_host_mode(!self.is_running());
        self.0.wake.fd()
    }

    /// `afut_loop_fork`: in a child after `fork()`, fresh kernel objects behind the loop's
    /// fds, registered again, with the timer re-armed and the signal raised if work is ready.
    pub(crate) fn renew_after_fork(&self) -> Result<(), std::io::Error> {
        if self.is_running() {
            return Err(std::io::Error::from(std::io::ErrorKind::ResourceBusy));
        }
        let interests = self.0.io.interests();
        self.0.wake.renew_after_fork(&interests)?;
        if self.0.host_mode.load(Ordering::Acquire) {
            let work = {
                let mut s = self.0.sched.lock();
                let Sched { timers, handles, .. } = &mut *s;
                let due = self.arm_for_host(timers.next_deadline(handles));
                !self.0.queue.is_empty_hint() || due
            };
            if work {
                self.signal();
            }
        }
        Ok(())
    }

    pub(crate) fn set_wakeup_hook(&self, hook: Option<Hook>) {
        let old = std::mem::replace(&mut *self.0.wakeup_hook.lock(), hook.map(Arc::new));
        self.0.host_mode.store(true, Ordering::Release);
        drop(old);
    }

    /// `afut_loop_timeout_ms`: -1 nothing scheduled, 0 work ready, else ms to the next timer
    /// rounded up (virtual clock: see [`timers_budget`]).
    pub(crate) fn timeout_ms(&self) -> i32 {
        if self.is_closed() {
            return -1;
        }
        if !self.0.queue.is_empty_hint() {
            return 0;
        }
        let mut s = self.0.sched.lock();
        timers_budget(&self.0, &mut s, -1)
    }

    /// Points the timerfd at the next deadline `next` (for hosts, and for waits on other
    /// threads). A virtual clock never arms it; the result then says whether a timer is due,
    /// which is work the caller must signal.
    fn arm_for_host(&self, next: Option<f64>) -> bool {
        match self.virtual_time() {
            None => {
                self.0.wake.arm_timer(next);
                false
            }
            Some(now) => next.is_some_and(|d| d <= now),
        }
    }

    // ----- the clock -----

    /// `afut_loop_time`: the real monotonic clock, or the virtual one.
    pub(crate) fn time(&self) -> f64 {
        self.0.time()
    }

    /// `afut_loop_set_virtual_clock`: refused while a live timer exists. The first switch
    /// starts the clock at 0; a later one only changes `auto_advance`.
    pub(crate) fn set_virtual_clock(&self, auto_advance: bool) -> afut_status_t {
        if self.0.queue.runner() != 0 && !self.0.queue.is_owner() {
            return AFUT_ERR_WRONG_THREAD;
        }
        let mut s = self.0.sched.lock();
        if self.0.closed_under(&s) {
            return AFUT_ERR_LOOP_CLOSED;
        }
        let Sched { timers, handles, .. } = &mut *s;
        if timers.next_deadline(handles).is_some() {
            return AFUT_ERR_INVALID_STATE;
        }
        if self.0.clock_mode.load(Ordering::Acquire) == REAL_CLOCK {
            // Only dead entries are left: drop them, and the timerfd they may have armed.
            timers.clear();
            self.0.timer_count.store(0, Ordering::Relaxed);
            self.0.wake.arm_timer(None);
            self.0.virtual_now.store(0f64.to_bits(), Ordering::Release);
        }
        let mode = if auto_advance { VIRTUAL_AUTO } else { VIRTUAL_MANUAL };
        self.0.clock_mode.store(mode, Ordering::Release);
        AFUT_OK
    }

    /// `afut_loop_advance_time`: moves a virtual clock forward; timers due then run in the
    /// next iteration (a loop or host waiting elsewhere is woken for them).
    pub(crate) fn advance_time(&self, seconds: f64) -> afut_status_t {
        if !(seconds >= 0.0 && seconds.is_finite()) {
            return AFUT_ERR_INVALID_ARGUMENT;
        }
        if self.virtual_time().is_none() {
            return AFUT_ERR_INVALID_STATE;
        }
        let due = {
            let mut s = self.0.sched.lock();
            if self.0.closed_under(&s) {
                return AFUT_ERR_LOOP_CLOSED;
            }
            let now = self.virtual_time().unwrap_or(0.0) + seconds;
            if !now.is_finite() {
                // Past DBL_MAX: an infinite clock would make "never" due and every later
                // deadline NaN.
                return AFUT_ERR_INVALID_ARGUMENT;
            }
            self.0.virtual_now.store(now.to_bits(), Ordering::Release);
            let Sched { timers, handles, .. } = &mut *s;
            timers.next_deadline(handles).is_some_and(|d| d <= now)
        };
        if due {
            self.notify();
        }
        AFUT_OK
    }

    /// Holds an auto-advancing virtual clock until the returned guard is dropped.
    pub(crate) fn hold_clock(&self) -> ClockHold {
        self.0.clock_holds.fetch_add(1, Ordering::AcqRel);
        ClockHold(self.clone())
    }

    // ----- running (the loop's thread) -----

    fn enter(&self) -> Result<RunGuard<'_>, afut_status_t> {
        if self.is_poisoned() {
            return Err(AFUT_ERR_PANIC);
        }
        if self.is_closed() {
            return Err(AFUT_ERR_LOOP_CLOSED);
        }
        if !self.0.queue.claim() {
            return Err(AFUT_ERR_LOOP_RUNNING);
        }
        let guard = RunGuard(&self.0);
        if self.is_closed() {
            return Err(AFUT_ERR_LOOP_CLOSED);
        }
        Ok(guard)
    }

    pub(crate) fn run_forever(&self) -> afut_status_t {
        let _guard = match self.enter() {
            Ok(g) => g,
            Err(s) => return s,
        };
        self.run_until_stopped();
        AFUT_OK
    }

    fn run_until_stopped(&self) {
        loop {
            self.iteration(-1);
            if self.0.stopping.swap(false, Ordering::AcqRel) {
                break;
            }
        }
    }

    /// `afut_loop_run_until_complete` for a future bound to this loop.
    pub(crate) fn run_until_complete(&self, fut: &Future) -> afut_status_t {
        if !self.owns(fut) {
            return AFUT_ERR_INVALID_ARGUMENT;
        }
        let _guard = match self.enter() {
            Ok(g) => g,
            Err(s) => return s,
        };
        let generation = self.0.run_generation.fetch_add(1, Ordering::AcqRel) + 1;
        let token = next_token();
        let weak = self.downgrade();
        let stopper = DoneCb::rust(token, move |_| {
            if let Some(l) = weak.upgrade() {
                if l.run_generation.load(Ordering::Acquire) == generation {
                    l.stopping.store(true, Ordering::Release);
                }
            }
        });
        if let Err((s, cb)) = fut.add_done_callback(stopper) {
            drop(cb);
            return s;
        }
        self.run_until_stopped();
        // A stale stopper must never stop a later run (B14): remove it, and make a queued
        // one inert.
        fut.remove_token(token);
        self.0.run_generation.fetch_add(1, Ordering::AcqRel);
        if !fut.is_done() {
            return AFUT_ERR_INVALID_STATE;
        }
        match fut.result() {
            Ok(_) => AFUT_OK,
            Err(s) => s,
        }
    }

    /// `afut_loop_run_once`: one iteration, waiting up to `timeout_ms` for work.
    pub(crate) fn run_once(&self, timeout_ms: i32) -> Result<usize, afut_status_t> {
        let _guard = self.enter()?;
        Ok(self.iteration(if timeout_ms < 0 { -1 } else { timeout_ms }))
    }

    /// One iteration; returns how many callbacks and timers ran.
    fn iteration(&self, max_wait_ms: i32) -> usize {
        let inner = &*self.0;
        let queue = &inner.queue;
        let host = inner.host_mode.load(Ordering::Acquire);
        if host {
            // The poller is this thread's for the iteration (see `Wakeup::park_relay`).
            inner.wake.park_relay();
            // Hosts see the fd: consume the signal every iteration (it is raised again at the
            // end if work is left, which gives edge-triggered hosts a fresh edge).
            inner.wake.clear();
        }
        // With fds watched, the wait also says which are ready.
        let mut polled = false;
        if max_wait_ms != 0 && queue.is_empty() && !inner.stopping.load(Ordering::Acquire) {
            let mut timeout = self.wait_budget(max_wait_ms);
            if timeout != 0 {
                // About to sleep on a raised signal: lower it (no system call). A standalone
                // loop lowers the signal only here, so producers write the eventfd once per
                // sleep, never once per batch. Then one last look at the queues, with a
                // read-modify-write of the remote stack: anything pushed after it raises the
                // signal again (and writes the eventfd), so it is either seen by this look or
                // wakes the wait below (see `runtime::queue`).
                let lowered = !host && inner.wake.is_signalled();
                if lowered {
                    inner.wake.lower();
                }
                if !queue.look_before_sleep() {
                    timeout = 0;
                } else if lowered {
                    timeout = self.wait_budget(max_wait_ms);
                }
                if timeout != 0 && !inner.wake.is_signalled() {
                    polled = inner.wake.wait(timeout, inner.wake.watching());
                    // Woken: consume what woke us (a host-mode loop does so at every
                    // iteration's start instead).
                    if host {
                        inner.wake.clear();
                    } else {
                        inner.wake.drain();
                    }
                }
            }
        }
        // Which watched fds are ready: the wait said so (`polled`), or a look with a zero
        // timeout does (also when fds became watched during the wait).
        let io = polled || (inner.wake.watching() && inner.wake.wait(0, true));
        // The batch is the ready queue as it stands now (what other threads pushed drained
        // into it first): `batch` items from its front. What they schedule goes behind them.
        let mut batch = if host { queue.begin_batch_after_clear() } else { queue.begin_batch() };
        if io {
            // After what was ready, before the timers that came due (asyncio's order).
            inner.io.dispatch(&inner.wake, |w| {
                queue.push_to_batch(Item::Io(w));
                batch += 1;
            });
        }
        // Due timers join the end of the batch. The lock and the clock only when a timer is
        // involved.
        let armed = inner.wake.armed_deadline();
        if inner.timer_count.load(Ordering::Relaxed) > 0 || armed.is_finite() {
            let mut s = inner.sched.lock();
            let Sched { timers, handles, .. } = &mut *s;
            let now = match inner.virtual_time() {
                None => {
                    let now = clock::now();
                    if armed <= now {
                        // The timerfd fired (or is about to): clear it, or it stays readable.
                        inner.wake.consume_timer();
                    }
                    now
                }
                Some(now) => {
                    // Auto-advance: nothing ready (work from other threads is in the batch by
                    // now) and no timer due: jump exactly to the next deadline.
                    let idle = batch == 0 && !inner.stopping.load(Ordering::Acquire);
                    match timers.next_deadline(handles) {
                        Some(d) if idle && d > now && d.is_finite() && inner.may_jump() => {
                            inner.virtual_now.store(d.to_bits(), Ordering::Release);
                            d
                        }
                        _ => now,
                    }
                }
            };
            timers.pop_due(now, handles, |h| {
                queue.push_to_batch(Item::Call(h));
                batch += 1;
            });
            inner.timer_count.store(timers.len(), Ordering::Relaxed);
        }
        let debug = inner.debug.load(Ordering::Acquire);
        let mut ran = 0;
        for _ in 0..batch {
            let Some(item) = queue.pop() else { break };
            match item {
                Item::Call(h) => {
                    let entry = inner.sched.lock().handles.remove(h);
                    let Some(entry) = entry else { continue };
                    if debug {
                        let (started, what) = (inner.time(), entry.callback.describe());
                        entry.callback.run();
                        slow_callback(inner, started, what);
                    } else {
                        entry.callback.run();
                    }
                    ran += 1;
                }
                Item::Done(d) => {
                    // The future stays alive (pinned) until `run` is dropped, even if a
                    // callback drops its last reference.
                    let mut run = d.run();
                    while let Some(cb) = run.next() {
                        if debug {
                            let (started, what) = (inner.time(), cb.describe());
                            cb.run(run.future());
                            slow_callback(inner, started, what);
                        } else {
                            cb.run(run.future());
                        }
                        ran += 1;
                    }
                }
                Item::Late(late) => {
                    let (fut, cb) = *late;
                    if debug {
                        let (started, what) = (inner.time(), cb.describe());
                        cb.run(&fut);
                        slow_callback(inner, started, what);
                    } else {
                        cb.run(&fut);
                    }
                    ran += 1;
                }
                Item::Io(w) => {
                    if debug {
                        let (started, what) = (inner.time(), w.describe());
                        if !w.run() {
                            continue;
                        }
                        slow_callback(inner, started, what);
                    } else if !w.run() {
                        continue;
                    }
                    ran += 1;
                }
            }
        }
        if host {
            // Keep the fd exact for hosts: the timerfd armed for the next deadline (under the
            // lock, like every arm), and readable while work is left.
            let mut due = false;
            if inner.timer_count.load(Ordering::Relaxed) > 0 || inner.wake.armed_deadline().is_finite() {
                let mut s = inner.sched.lock();
                let Sched { timers, handles, .. } = &mut *s;
                due = self.arm_for_host(timers.next_deadline(handles));
            }
            if due || !queue.is_empty() {
                // A fresh edge for edge-triggered hosts.
                self.signal();
            }
            self.host_io_done();
        }
        ran
    }

    /// How long the iteration may wait: 0 if work is ready, else until the next timer,
    /// capped by `max_wait_ms` (-1: no cap). Takes `sched`: a timer another thread adds
    /// either is seen here or sees this thread's run (and arms the timerfd).
    fn wait_budget(&self, max_wait_ms: i32) -> i32 {
        if !self.0.queue.is_empty() {
            return 0;
        }
        let mut s = self.0.sched.lock();
        timers_budget(&self.0, &mut s, max_wait_ms)
    }

    /// `afut_loop_close`: refuses while running; drops everything queued (each userdata freed
    /// once, outside the lock); idempotent.
    pub(crate) fn close(&self) -> afut_status_t {
        let _guard = match self.enter() {
            Ok(g) => g,
            Err(AFUT_ERR_LOOP_CLOSED) => return AFUT_OK,
            Err(AFUT_ERR_PANIC) if self.0.queue.runner() == 0 => {
                // A poisoned loop can still be closed and freed.
                self.0.queue.force_claim();
                RunGuard(&self.0)
            }
            Err(s) => return s,
        };
        let entries = {
            let mut s = self.0.sched.lock();
            // Under `sched`: see `LoopInner::closed`.
            self.0.closed.store(true, Ordering::Release);
            s.timers.clear();
            self.0.timer_count.store(0, Ordering::Relaxed);
            s.handles.drain()
        };
        // From here on, other threads' pushes are refused.
        let ready = self.0.queue.close();
        // Hold the watched futures (tasks) first: a task that only its queued step kept alive
        // must still hear of the close, not just vanish with the queue.
        let watched = std::mem::take(&mut *self.0.watched.lock());
        let watched: Vec<Future> = watched.iter().filter_map(WeakFuture::upgrade).collect();
        let watchers = self.0.io.close(&self.0.wake);
        drop(ready);
        drop(entries);
        drop(watchers);
        // Then tell them, with no lock held (they run reports and destructors).
        for fut in &watched {
            if let Some(b) = fut.behaviour() {
                b.loop_closed(fut);
            }
        }
        drop(watched);
        AFUT_OK
    }

    /// `afut_loop_free`: closes, then releases the handler and the wakeup hook. The caller
    /// then drops its reference; futures may keep the loop's memory alive a while longer.
    pub(crate) fn release(&self) -> bool {
        if self.0.queue.runner() != 0 {
            eprintln!("afut: afut_loop_free() called while the loop is running (from one of its callbacks?); ignored");
            return false;
        }
        self.close();
        self.0.wake.stop_relay();
        self.0.freed.store(true, Ordering::Release);
        let handler = self.0.handler.lock().take();
        let hook = self.0.wakeup_hook.lock().take();
        drop(handler);
        drop(hook);
        true
    }

    // ----- fd watchers (asyncio add_reader / add_writer) -----

    /// `afut_loop_add_reader` / `add_writer`; the replaced watcher (if any) is freed here, with
    /// no lock held, unless a queued item or its running callback still holds it.
    pub(crate) fn add_watcher(&self, fd: i32, kind: Kind, func: CallbackFn, data: Owned) -> Result<(), AddError> {
        let old = self.0.io.add(&self.0.wake, fd, kind, func, data)?;
        drop(old);
        Ok(())
    }

    /// `afut_loop_remove_reader` / `remove_writer`: true iff a watcher was removed.
    pub(crate) fn remove_watcher(&self, fd: i32, kind: Kind) -> bool {
        let old = self.0.io.remove(&self.0.wake, fd, kind);
        old.is_some()
    }

    /// End of a host-mode iteration: watched fds still ready give an edge-triggered host a
    /// fresh edge (a wait on the poller consumed the old one), and the relay (pollers without
    /// an fd) watches again.
    fn host_io_done(&self) {
        let wake = &self.0.wake;
        if wake.watching() && wake.poller_ready() {
            self.signal();
        }
        wake.arm_relay();
    }

    // ----- reports -----

    pub(crate) fn set_exception_handler(&self, handler: Option<Handler>) {
        let old = std::mem::replace(&mut *self.0.handler.lock(), handler.map(Arc::new));
        drop(old);
    }
}

impl LoopInner {
    /// The handle C sees for this loop.
    pub(crate) fn as_ptr(&self) -> *mut afut_loop_t {
        self as *const LoopInner as *mut afut_loop_t
    }

    /// True on the thread currently inside this loop's run_* call.
    pub(crate) fn is_running_on_this_thread(&self) -> bool {
        self.queue.is_owner()
    }

    /// The closed flag, read by a submission that holds `sched` (the `&Sched` argument, only
    /// reachable through the lock's guard, proves it). The lock orders the read against the
    /// close, which stores the flag while holding `sched`, so no stronger ordering is needed.
    fn closed_under(&self, _locked: &Sched) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    pub(crate) fn is_freed(&self) -> bool {
        self.freed.load(Ordering::Acquire)
    }

    /// The loop's clock: the real monotonic clock, or the virtual one.
    fn time(&self) -> f64 {
        self.virtual_time().unwrap_or_else(clock::now)
    }

    /// The virtual clock's time, None on a real clock.
    fn virtual_time(&self) -> Option<f64> {
        (self.clock_mode.load(Ordering::Acquire) != REAL_CLOCK)
            .then(|| f64::from_bits(self.virtual_now.load(Ordering::Acquire)))
    }

    /// Auto-advance is on and no executor job holds the clock.
    fn may_jump(&self) -> bool {
        self.clock_mode.load(Ordering::Acquire) == VIRTUAL_AUTO && self.clock_holds.load(Ordering::Acquire) == 0
    }

    /// Work was queued (the `sched` lock is released): wake whoever may be waiting for it.
    ///
    /// - A host watches the fd (host mode): always signal, unless this is the running loop
    ///   thread itself, which re-signals at the end of its iteration if work is left.
    /// - Otherwise only a loop running on another thread can be blocked. If no thread runs
    ///   it, none is blocked: the next run looks at the queue before it waits. This check is
    ///   race-free because the push and the run's last look before it sleeps are both
    ///   read-modify-writes of the remote stack: either the look comes after our push (and
    ///   sees the item), or our push read what the look wrote, and then the run's claim of
    ///   `running` (made before the look) is visible here (see `runtime::queue`).
    fn notify(&self) {
        if self.waiter_elsewhere() {
            self.signal();
        }
    }

    /// Whether a thread other than this one may be waiting for the loop's work: a host
    /// watching the fd, or a run on another thread (see [`Loop::notify`]).
    fn waiter_elsewhere(&self) -> bool {
        self.queue.waiter_elsewhere(self.host_mode.load(Ordering::Acquire))
    }

    fn signal(&self) {
        if self.wake.signal() {
            let hook = self.wakeup_hook.lock().clone();
            if let Some(h) = hook {
                h.call();
            }
        }
    }

    /// Delivers a report to the exception handler (or stderr), with no lock held.
    fn deliver_report(&self, message: &CStr, future: Option<&FutureInner>, exception: Option<&afut_exception_t>) {
        let handler = if self.is_freed() { None } else { self.handler.lock().clone() };
        match handler {
            Some(h) => {
                let ctx = afut_error_context_t {
                    message: message.as_ptr(),
                    future: future.map_or(std::ptr::null_mut(), |f| f as *const FutureInner as *mut _),
                    exception: exception.map_or(std::ptr::null(), |e| e as *const _),
                };
                h.call(self.as_ptr(), &ctx);
            }
            None => {
                let description = future.map(|f| f.describe());
                write_to_stderr(message, description.as_deref(), exception);
            }
        }
    }
}

impl LoopLink for LoopInner {
    /// Queues a completed future's callbacks as one contiguous run (F5). A closed loop
    /// refuses them: they are dropped here, unrun, each userdata freed once, no lock held.
    fn schedule_dispatch(&self, completed: Completed) {
        match self.queue.push_completed(completed) {
            Ok(Pushed::Remote) => self.notify(),
            Ok(Pushed::Local) => {}
            Err(refused) => drop(refused),
        }
    }

    /// Queues one callback of a done future; on a closed loop it comes back unqueued.
    fn schedule_late(&self, fut: &Future, cb: DoneCb) -> Result<(), (afut_status_t, DoneCb)> {
        match self.queue.push(Item::Late(Box::new((fut.clone(), cb)))) {
            Ok(Pushed::Remote) => {
                self.notify();
                Ok(())
            }
            Ok(Pushed::Local) => Ok(()),
            Err(Item::Late(late)) => Err((AFUT_ERR_LOOP_CLOSED, late.1)),
            Err(_) => unreachable!("the item pushed"),
        }
    }

    fn is_running_on_this_thread(&self) -> bool {
        LoopInner::is_running_on_this_thread(self)
    }

    fn report(&self, message: &CStr, future: Option<&FutureInner>, exception: Option<&afut_exception_t>) {
        self.deliver_report(message, future, exception)
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}
