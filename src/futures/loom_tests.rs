//! Model checks of the real future state machine under loom (`--cfg loom`): every
//! interleaving loom explores (up to its preemption bound) of completion, add_done_callback,
//! cancel, afut_wait and the last release of a reference, run on the code the library ships
//! (`futures::state` and `futures::future`, with loom's atomics and cells from `crate::sync`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --lib --release loom_` (scripts/test.sh's loom
//! stage). Each test prints how many interleavings it explored.

// Under `afut_loom_broken` only the test that expects the failure is compiled.
#![cfg_attr(afut_loom_broken, allow(dead_code))]

use std::cell::Cell;
use std::ffi::{CStr, c_void};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use loom::thread;

use crate::abi::{afut_exception_t, afut_status_t};
use crate::callback::Owned;
use crate::futures::done::DoneCallback;
use crate::futures::future::{Completed, Dispatch, DoneCb, Future, FutureInner, LoopLink};

/// Runs `f` in every interleaving loom explores with at most `preemptions` preemptions
/// (`LOOM_MAX_PREEMPTIONS` overrides it) and prints how many there were.
pub(crate) fn check(name: &str, preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    // Loom runs a model's threads as coroutines on the test's own thread: thread-locals are
    // per test (cargo runs tests in parallel), shared by the model's threads.
    thread_local! {
        static RUNS: Cell<usize> = const { Cell::new(0) };
    }
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    let bound = builder.preemption_bound;
    RUNS.set(0);
    let started = Instant::now();
    builder.check(move || {
        RUNS.set(RUNS.get() + 1);
        f()
    });
    println!("loom: {name}: {} interleavings (preemption bound {:?}) in {:.2?}", RUNS.get(), bound, started.elapsed());
}

thread_local! {
    /// How many times the value of the test's futures was freed (`value_free`), per
    /// iteration (a thread-local: see `check`).
    static FREED_COUNT: Cell<usize> = const { Cell::new(0) };
}

/// The [`FREED_COUNT`] of this test.
struct Freed;

static FREED: Freed = Freed;

impl Freed {
    fn store(&self, v: usize, _: Ordering) {
        FREED_COUNT.set(v);
    }
    fn load(&self, _: Ordering) -> usize {
        FREED_COUNT.get()
    }
}

unsafe extern "C" fn count_free(_: *mut c_void) {
    FREED_COUNT.set(FREED_COUNT.get() + 1);
}

/// A value whose destructor counts in [`FREED`].
fn counted_value() -> Owned {
    Owned::new(0x10 as *mut c_void, Some(count_free))
}

type Log = Arc<std::sync::Mutex<Vec<(usize, u64)>>>;

/// A done-callback that checks it sees its future done and appends `id` (and the thread it
/// ran on) to `log`.
fn logging(id: usize, log: &Log) -> DoneCb {
    let log = log.clone();
    DoneCallback::rust(id as u64, move |f: &Future| {
        assert!(f.is_done(), "a done-callback ran on a pending future");
        let thread = crate::thread_id::current();
        // No loom operation inside the std mutex: it is never contended.
        log.lock().unwrap().push((id, thread));
    })
}

fn new_log() -> Log {
    Arc::new(std::sync::Mutex::new(Vec::new()))
}

/// The callbacks that ran, checking that those run by one thread ran in registration order
/// (a loop-less future runs its callbacks in the completing thread, and one added once it is
/// done in the adding thread: across threads there is no order, as with concurrent.futures).
fn ran(log: &Log) -> Vec<usize> {
    let log = log.lock().unwrap().clone();
    for (i, a) in log.iter().enumerate() {
        for b in &log[i + 1..] {
            assert!(a.1 != b.1 || a.0 < b.0, "callbacks ran out of order on one thread: {log:?}");
        }
    }
    let mut ids: Vec<usize> = log.iter().map(|e| e.0).collect();
    ids.sort_unstable();
    ids
}

/// The first add_done_callback (into the inline slot) against the completion, on a loop-less
/// future: the callback runs exactly once (in the completing thread, or in the adding one if
/// it came after), always on a done future, and the future ends done. This is the race the
/// broken variant (`--cfg afut_loom_broken`) gets wrong.
pub(crate) fn first_add_vs_completion() {
    let log = new_log();
    let fut = Future::new(None);
    let f1 = fut.clone();
    let l1 = log.clone();
    let adder = thread::spawn(move || {
        f1.add_done_callback(logging(1, &l1)).map_err(|_| ()).unwrap();
    });
    let f2 = fut.clone();
    let completer = thread::spawn(move || f2.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
    adder.join().unwrap();
    assert!(completer.join().unwrap());
    assert!(fut.is_done(), "the completion was lost");
    assert_eq!(ran(&log), vec![1], "the callback must run exactly once");
}

#[test]
#[cfg(not(afut_loom_broken))]
fn loom_first_add_vs_completion() {
    check("first add vs completion", 3, first_add_vs_completion);
}

/// The deliberately broken variant must be caught: the same model fails.
#[test]
#[cfg(afut_loom_broken)]
fn loom_catches_the_broken_variant() {
    let caught = std::panic::catch_unwind(|| check("first add vs completion (broken)", 3, first_add_vs_completion));
    assert!(caught.is_err(), "loom did not catch the broken first add");
    println!("loom: the broken variant was caught");
}

// Each model below races two threads (plus the main one, which prepares and checks): a
// thread waiting out another's BUSY step yields to it, and with a single waiter loom always
// lets the holder finish. (With two spinners loom also explores schedules that starve the
// holder for ever, which no real scheduler does, and gives up.) Three-way races are covered
// pair by pair.

/// Frees a refused value the way the C API does: it is the caller's again.
fn completed(r: Result<(), (afut_status_t, Owned)>) -> bool {
    match r {
        Ok(()) => true,
        Err((_, v)) => {
            v.disarm();
            false
        }
    }
}

/// A second add (onto the overflow list) against the completion: both callbacks run once,
/// in registration order when the completion took both.
#[test]
#[cfg(not(afut_loom_broken))]
fn loom_second_add_vs_completion() {
    check("second add vs completion", 3, || {
        let log = new_log();
        let fut = Future::new(None);
        fut.add_done_callback(logging(1, &log)).map_err(|_| ()).unwrap();
        let (f1, l1) = (fut.clone(), log.clone());
        let adder = thread::spawn(move || f1.add_done_callback(logging(2, &l1)).map_err(|_| ()).unwrap());
        let f2 = fut.clone();
        let completer = thread::spawn(move || f2.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        adder.join().unwrap();
        assert!(completer.join().unwrap());
        assert_eq!(ran(&log), vec![1, 2]);
    });
}

/// set_result against cancel with two callbacks registered: exactly one completion wins,
/// each callback runs once, in order, after it, and the value is freed once (or given back).
#[test]
#[cfg(not(afut_loom_broken))]
fn loom_set_result_vs_cancel() {
    check("set_result vs cancel", 3, || {
        FREED.store(0, Ordering::SeqCst);
        let log = new_log();
        let fut = Future::new(None);
        fut.add_done_callback(logging(1, &log)).map_err(|_| ()).unwrap();
        fut.add_done_callback(logging(2, &log)).map_err(|_| ()).unwrap();
        let f1 = fut.clone();
        let setter = thread::spawn(move || completed(f1.set_result(counted_value())));
        let f2 = fut.clone();
        let canceller = thread::spawn(move || f2.cancel_plain(None));
        let set = setter.join().unwrap();
        let cancelled = canceller.join().unwrap();
        assert!(set ^ cancelled, "exactly one completion wins (set {set}, cancelled {cancelled})");
        assert_eq!(fut.is_cancelled(), cancelled);
        assert_eq!(ran(&log), vec![1, 2]);
        drop(fut);
        assert_eq!(FREED.load(Ordering::SeqCst), usize::from(set), "the value is freed once, with the future");
    });
}

/// remove_done_callback against the completion: a removed callback never runs, the others
/// run once.
#[test]
#[cfg(not(afut_loom_broken))]
fn loom_remove_vs_completion() {
    check("remove vs completion", 3, || {
        let log = new_log();
        let fut = Future::new(None);
        fut.add_done_callback(logging(1, &log)).map_err(|_| ()).unwrap();
        fut.add_done_callback(logging(2, &log)).map_err(|_| ()).unwrap();
        let f1 = fut.clone();
        let remover = thread::spawn(move || f1.remove_token(1));
        let f2 = fut.clone();
        let completer = thread::spawn(move || f2.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        let removed = remover.join().unwrap();
        assert!(completer.join().unwrap());
        assert_eq!(ran(&log), if removed { vec![2] } else { vec![1, 2] });
    });
}

/// remove_done_callback against an add: the list stays consistent (the removed callback
/// never runs, the added one runs once, after the completion).
#[test]
#[cfg(not(afut_loom_broken))]
fn loom_remove_vs_add() {
    check("remove vs add", 3, || {
        let log = new_log();
        let fut = Future::new(None);
        fut.add_done_callback(logging(1, &log)).map_err(|_| ()).unwrap();
        let f1 = fut.clone();
        let remover = thread::spawn(move || f1.remove_token(1));
        let (f2, l2) = (fut.clone(), log.clone());
        let adder = thread::spawn(move || f2.add_done_callback(logging(2, &l2)).map_err(|_| ()).unwrap());
        assert!(remover.join().unwrap());
        adder.join().unwrap();
        assert!(ran(&log).is_empty());
        fut.set_result(Owned::borrowed(std::ptr::null_mut())).map_err(|_| ()).unwrap();
        assert_eq!(ran(&log), vec![2]);
    });
}

/// afut_wait against the completion: the waiter always wakes (loom reports a deadlock if a
/// wakeup is lost).
#[test]
#[cfg(not(afut_loom_broken))]
fn loom_wait_vs_completion() {
    check("wait vs completion", 4, || {
        let fut = Future::new(None);
        let f1 = fut.clone();
        let waiter = thread::spawn(move || f1.wait(f64::INFINITY));
        fut.set_result(Owned::borrowed(std::ptr::null_mut())).map_err(|_| ()).unwrap();
        assert_eq!(waiter.join().unwrap(), crate::abi::AFUT_OK);
    });
}

// ----- a loop future, its pin and the last release --------------------------------------

/// A stand-in loop: completions are published and handed to a dispatching thread.
struct FakeLoop {
    queued: loom::sync::Mutex<Vec<Dispatch>>,
    ready: loom::sync::Condvar,
}

impl FakeLoop {
    fn new() -> Arc<FakeLoop> {
        Arc::new(FakeLoop { queued: loom::sync::Mutex::new(Vec::new()), ready: loom::sync::Condvar::new() })
    }

    /// Waits for the next completion and runs its callbacks (the loop's dispatch).
    fn dispatch_one(&self) {
        let d = {
            let mut q = self.queued.lock().unwrap();
            loop {
                if let Some(d) = q.pop() {
                    break d;
                }
                q = self.ready.wait(q).unwrap();
            }
        };
        let mut run = d.run();
        while let Some(cb) = run.next() {
            cb.run(run.future());
        }
    }
}

impl LoopLink for FakeLoop {
    fn schedule_dispatch(&self, completed: Completed) {
        self.queued.lock().unwrap().push(completed.publish());
        self.ready.notify_one();
    }
    fn schedule_late(&self, _: &Future, cb: DoneCb) -> Result<(), (afut_status_t, DoneCb)> {
        Err((crate::abi::AFUT_ERR_LOOP_CLOSED, cb))
    }
    fn is_running_on_this_thread(&self) -> bool {
        false
    }
    fn report(&self, _: &CStr, _: Option<&FutureInner>, _: Option<&afut_exception_t>) {}
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// The completion (one thread), the loop's dispatch of the callback (another) and the
/// application's last release (the main thread), all at once: the callback runs once, on a
/// live future, and the future (its value) is freed exactly once, by whoever releases the
/// last reference: the application, the completer, or the dispatch.
#[test]
#[cfg(not(afut_loom_broken))]
fn loom_last_release_vs_completion_and_dispatch() {
    check("last release vs completion and dispatch", 3, || {
        FREED.store(0, Ordering::SeqCst);
        let lp = FakeLoop::new();
        let log = new_log();
        let fut = Future::new(Some(lp.clone()));
        fut.add_done_callback(logging(1, &log)).map_err(|_| ()).unwrap();
        let f1 = fut.clone();
        let completer = thread::spawn(move || {
            f1.set_result(counted_value()).map_err(|_| ()).unwrap();
            drop(f1);
        });
        let l2 = lp.clone();
        let dispatcher = thread::spawn(move || l2.dispatch_one());
        // The application's last reference goes while the completion and the dispatch may
        // be under way.
        drop(fut);
        completer.join().unwrap();
        dispatcher.join().unwrap();
        assert_eq!(ran(&log), vec![1]);
        assert_eq!(FREED.load(Ordering::SeqCst), 1, "freed exactly once");
    });
}

/// During the dispatch, a callback keeps its future (a new reference) while the application
/// drops its own: freed exactly once, after the kept reference goes.
#[test]
#[cfg(not(afut_loom_broken))]
fn loom_callback_keeps_its_future_while_the_last_release_races() {
    check("callback keeps its future vs last release", 4, || {
        FREED.store(0, Ordering::SeqCst);
        let lp = FakeLoop::new();
        let kept: Arc<std::sync::Mutex<Option<Future>>> = Arc::new(std::sync::Mutex::new(None));
        let fut = Future::new(Some(lp.clone()));
        let k = kept.clone();
        fut.add_done_callback(DoneCallback::rust(1, move |f: &Future| {
            let keep = f.clone();
            *k.lock().unwrap() = Some(keep);
        }))
        .map_err(|_| ())
        .unwrap();
        fut.set_result(counted_value()).map_err(|_| ()).unwrap();
        let l2 = lp.clone();
        let dispatcher = thread::spawn(move || l2.dispatch_one());
        drop(fut);
        dispatcher.join().unwrap();
        assert_eq!(FREED.load(Ordering::SeqCst), 0, "a kept future is alive");
        let keep = kept.lock().unwrap().take().unwrap();
        assert_eq!(keep.result().ok(), Some(0x10 as *mut c_void));
        drop(keep);
        assert_eq!(FREED.load(Ordering::SeqCst), 1, "freed exactly once");
    });
}

/// Weak references against the last release: an upgrade either gets a live future or
/// nothing, and the allocation goes once. Run on a loop-less future and on a loop future
/// whose dispatch reserve is never used (no callback).
#[test]
#[cfg(not(afut_loom_broken))]
fn loom_weak_upgrade_vs_last_release() {
    weak_upgrade_vs_last_release(false);
    weak_upgrade_vs_last_release(true);
}

fn weak_upgrade_vs_last_release(with_loop: bool) {
    check("weak upgrade vs last release", 4, move || {
        FREED.store(0, Ordering::SeqCst);
        let lp: Option<Arc<dyn LoopLink>> = if with_loop { Some(FakeLoop::new()) } else { None };
        let fut = Future::new(lp);
        fut.set_result(counted_value()).map_err(|_| ()).unwrap();
        let weak = fut.downgrade();
        let upgrader = thread::spawn(move || {
            if let Some(f) = weak.upgrade() {
                assert_eq!(f.result().ok(), Some(0x10 as *mut c_void));
            }
        });
        drop(fut);
        upgrader.join().unwrap();
        assert_eq!(FREED.load(Ordering::SeqCst), 1);
    });
}

/// A loop future that only its queued dispatch keeps alive (the application dropped it,
/// holding a weak reference): an upgrade racing the dispatch gets the live, done future (the
/// dispatch reserve keeps it) or nothing once the dispatch released it; the callback runs
/// once and the future is freed exactly once, by the dispatch or by the upgraded reference.
#[test]
#[cfg(not(afut_loom_broken))]
fn loom_weak_upgrade_vs_dispatch_reserve() {
    check("weak upgrade vs dispatch reserve", 4, || {
        FREED.store(0, Ordering::SeqCst);
        let lp = FakeLoop::new();
        let log = new_log();
        let fut = Future::new(Some(lp.clone()));
        fut.add_done_callback(logging(1, &log)).map_err(|_| ()).unwrap();
        fut.set_result(counted_value()).map_err(|_| ()).unwrap();
        let weak = fut.downgrade();
        drop(fut);
        let upgrader = thread::spawn(move || {
            if let Some(f) = weak.upgrade() {
                assert!(f.is_done());
                assert_eq!(f.result().ok(), Some(0x10 as *mut c_void));
            }
        });
        let l2 = lp.clone();
        let dispatcher = thread::spawn(move || l2.dispatch_one());
        upgrader.join().unwrap();
        dispatcher.join().unwrap();
        assert_eq!(ran(&log), vec![1]);
        assert_eq!(FREED.load(Ordering::SeqCst), 1, "freed exactly once");
    });
}
