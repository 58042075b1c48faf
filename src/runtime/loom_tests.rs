//! Model checks of the real ready queues and wakeup flag under loom (`--cfg loom`): the
//! remote stack against the owner's drains, the local queue's order against remote pushes,
//! the close against pushes, and the wakeup protocol (no lost wakeup) in standalone and host
//! mode, with real completed futures travelling as intrusive nodes.
//!
//! The eventfd is modelled by a counter under a loom mutex and condition variable (written
//! on the flag's false-to-true edge, waited on, drained), so that a lost wakeup shows as a
//! deadlock, which loom reports. The loop side below makes the same calls in the same order
//! as `Loop::iteration` (flag, `look_before_sleep`, wait, drain; `take` or, in host mode,
//! clear then `take_after_clear`, and a fresh edge at the end); the producer side is
//! `LoopInner::notify` (`waiter_elsewhere`, then the flag and the eventfd).

use std::ffi::CStr;
use std::sync::Arc;

use loom::sync::{Condvar, Mutex};
use loom::thread;

use crate::abi::{AFUT_ERR_LOOP_CLOSED, afut_exception_t, afut_status_t};
use crate::callback::Owned;
use crate::futures::done::DoneCallback;
use crate::futures::future::{Completed, Dispatch, DoneCb, Future, FutureInner, LoopLink};
use crate::futures::loom_tests::check;
use crate::runtime::queue::{Flag, Pushed, Queues};

/// What the test loops queue.
enum Item {
    Done(Dispatch),
    Val(u32),
}

impl From<Dispatch> for Item {
    fn from(d: Dispatch) -> Item {
        Item::Done(d)
    }
}

/// The eventfd: a counter, readable while non-zero.
#[derive(Default)]
struct EventFd {
    count: Mutex<u64>,
    readable: Condvar,
}

impl EventFd {
    fn write(&self) {
        *self.count.lock().unwrap() += 1;
        self.readable.notify_all();
    }

    /// Blocks until readable (epoll_wait with no timeout).
    fn wait(&self) {
        let mut c = self.count.lock().unwrap();
        while *c == 0 {
            c = self.readable.wait(c).unwrap();
        }
    }

    fn drain(&self) {
        *self.count.lock().unwrap() = 0;
    }
}

/// A loop as far as the queues and the wakeup go.
struct TestLoop {
    queue: Queues<Item>,
    flag: Flag,
    efd: EventFd,
    host: bool,
    /// The values and callbacks that ran, in order.
    ran: std::sync::Mutex<Vec<u32>>,
}

impl TestLoop {
    fn new(host: bool) -> Arc<TestLoop> {
        Arc::new(TestLoop {
            queue: Queues::default(),
            flag: Flag::default(),
            efd: EventFd::default(),
            host,
            ran: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// `LoopInner::notify` after a push onto the remote stack (`Wakeup::signal`: the eventfd
    /// written on the flag's edge).
    fn notify(&self) {
        if self.queue.waiter_elsewhere(self.host) && self.flag.raise() {
            self.efd.write();
        }
    }

    /// `Loop::schedule` from any thread.
    fn push(&self, v: u32) {
        if let Ok(Pushed::Remote) = self.queue.push(Item::Val(v)) {
            self.notify();
        }
    }

    /// Runs a batch of `n` items; returns how many ran.
    fn run_batch(&self, n: usize) -> usize {
        for _ in 0..n {
            let Some(item) = self.queue.pop() else { return 0 };
            match item {
                Item::Val(v) => self.ran.lock().unwrap().push(v),
                Item::Done(d) => {
                    let mut run = d.run();
                    while let Some(cb) = run.next() {
                        cb.run(run.future());
                    }
                }
            }
        }
        n
    }

    /// One standalone iteration that may sleep (`Loop::iteration` with no timeout), on the
    /// thread that claimed the loop.
    fn iteration(&self) -> usize {
        if self.queue.is_empty() {
            let lowered = self.flag.is_raised();
            if lowered {
                self.flag.lower();
            }
            if self.queue.look_before_sleep() && !self.flag.is_raised() {
                self.efd.wait();
                self.efd.drain();
            }
        }
        let n = self.queue.begin_batch();
        self.run_batch(n)
    }

    /// One host-driven `run_once(loop, 0)` (the host saw the fd readable).
    fn run_once_host(&self) -> usize {
        assert!(self.queue.claim());
        // Wakeup::clear: drain the eventfd, then lower the flag.
        if self.flag.is_raised() {
            self.efd.drain();
            self.flag.lower();
        }
        let n = self.queue.begin_batch_after_clear();
        let n = self.run_batch(n);
        if !self.queue.is_empty() && self.flag.raise() {
            // A fresh edge for the host: work is left.
            self.efd.write();
        }
        self.queue.release();
        n
    }
}

impl LoopLink for TestLoop {
    fn schedule_dispatch(&self, completed: Completed) {
        match self.queue.push_completed(completed) {
            Ok(Pushed::Remote) => self.notify(),
            Ok(Pushed::Local) => {}
            Err(refused) => drop(refused),
        }
    }
    fn schedule_late(&self, _: &Future, cb: DoneCb) -> Result<(), (afut_status_t, DoneCb)> {
        Err((AFUT_ERR_LOOP_CLOSED, cb))
    }
    fn is_running_on_this_thread(&self) -> bool {
        self.queue.is_owner()
    }
    fn report(&self, _: &CStr, _: Option<&FutureInner>, _: Option<&afut_exception_t>) {}
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// A loop future whose one callback records `id` in the loop's log.
fn future_logging(lp: &Arc<TestLoop>, id: u32) -> Future {
    let fut = Future::new(Some(lp.clone()));
    let l = lp.clone();
    fut.add_done_callback(DoneCallback::rust(id as u64, move |f: &Future| {
        assert!(f.is_done());
        l.ran.lock().unwrap().push(id);
    }))
    .map_err(|_| ())
    .unwrap();
    fut
}

/// Two producers push (a value, and a loop future they complete) while the loop sleeps and
/// wakes: every item arrives exactly once, each producer's items in its order, and the
/// loop never sleeps through work (a lost wakeup would deadlock the model).
#[test]
fn loom_remote_pushes_vs_sleeping_loop() {
    check("remote pushes vs sleeping loop", 2, || {
        let lp = TestLoop::new(false);
        let fut = future_logging(&lp, 11);
        let owner = {
            let lp = lp.clone();
            thread::spawn(move || {
                assert!(lp.queue.claim());
                let mut n = 0;
                while n < 3 {
                    n += lp.iteration();
                }
                lp.queue.release();
            })
        };
        let p1 = {
            let lp = lp.clone();
            thread::spawn(move || {
                lp.push(1);
                lp.push(2);
            })
        };
        let f = fut.clone();
        let p2 = thread::spawn(move || {
            f.set_result(Owned::borrowed(std::ptr::null_mut())).map_err(|_| ()).unwrap();
        });
        drop(fut);
        p1.join().unwrap();
        p2.join().unwrap();
        owner.join().unwrap();
        let ran = lp.ran.lock().unwrap().clone();
        assert_eq!(ran.len(), 3, "{ran:?}");
        let p1_order: Vec<u32> = ran.iter().copied().filter(|v| *v < 10).collect();
        assert_eq!(p1_order, vec![1, 2], "one producer's pushes keep their order");
    });
}

/// A remote push that happens before a local push (happens-before through an atomic) runs
/// first: the owner drains the remote stack before each push of its own.
#[test]
fn loom_remote_then_local_keeps_fifo() {
    check("remote then local keeps FIFO", 3, || {
        let lp = TestLoop::new(false);
        let pushed = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let owner = {
            let (lp, pushed) = (lp.clone(), pushed.clone());
            thread::spawn(move || {
                assert!(lp.queue.claim());
                // Observe the remote push, then schedule from the loop's own thread.
                let saw = pushed.load(std::sync::atomic::Ordering::Acquire);
                lp.push(2);
                let mut n = 0;
                while n < 2 {
                    n += lp.iteration();
                }
                lp.queue.release();
                saw
            })
        };
        let producer = {
            let (lp, pushed) = (lp.clone(), pushed.clone());
            thread::spawn(move || {
                lp.push(1);
                pushed.store(true, std::sync::atomic::Ordering::Release);
            })
        };
        producer.join().unwrap();
        let saw = owner.join().unwrap();
        let ran = lp.ran.lock().unwrap().clone();
        if saw {
            assert_eq!(ran, vec![1, 2], "ordered by happens-before: FIFO");
        } else {
            assert_eq!(ran.len(), 2);
        }
    });
}

/// Host mode: the host waits on the fd, then runs one iteration; a producer pushes values
/// and completes a future meanwhile. Nothing is lost and the host always gets an edge while
/// work is left (a missing edge would deadlock the model).
#[test]
fn loom_host_mode_never_misses_an_edge() {
    check("host mode never misses an edge", 2, || {
        let lp = TestLoop::new(true);
        let fut = future_logging(&lp, 11);
        let host = {
            let lp = lp.clone();
            thread::spawn(move || {
                let mut n = 0;
                while n < 3 {
                    lp.efd.wait();
                    n += lp.run_once_host();
                }
            })
        };
        let producer = {
            let lp = lp.clone();
            thread::spawn(move || {
                lp.push(1);
                lp.push(2);
            })
        };
        fut.set_result(Owned::borrowed(std::ptr::null_mut())).map_err(|_| ()).unwrap();
        drop(fut);
        producer.join().unwrap();
        host.join().unwrap();
        assert_eq!(lp.ran.lock().unwrap().len(), 3);
    });
}

/// The close against pushes from another thread: each item is either refused (and given
/// back) or handed to the close, never lost; a refused completed future drops its callback
/// unrun, once.
#[test]
fn loom_close_vs_pushes() {
    check("close vs pushes", 3, || {
        let lp = TestLoop::new(false);
        let fut = future_logging(&lp, 11);
        let producer = {
            let (lp, f) = (lp.clone(), fut.clone());
            thread::spawn(move || {
                let refused = lp.queue.push(Item::Val(1)).is_err();
                f.set_result(Owned::borrowed(std::ptr::null_mut())).map_err(|_| ()).unwrap();
                refused
            })
        };
        assert!(lp.queue.claim());
        let closed = lp.queue.close();
        lp.queue.release();
        let refused = producer.join().unwrap();
        let values = closed.iter().filter(|i| matches!(i, Item::Val(_))).count();
        assert_eq!(values + usize::from(refused), 1, "the value is refused or closed, once");
        // A completion that came after the close was dropped unrun; one that came before is
        // in `closed` and is dropped unrun here.
        drop(closed);
        assert!(lp.ran.lock().unwrap().is_empty(), "nothing runs on a closed loop");
        assert!(lp.queue.push(Item::Val(2)).is_err(), "a closed loop refuses");
        drop(fut);
    });
}
