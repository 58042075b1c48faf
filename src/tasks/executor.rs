//! The executor: concurrent.futures' `ThreadPoolExecutor`, and asyncio's `run_in_executor`.
//!
//! A job is a C function and its userdata. `submit` returns a loop-less future whose
//! [`Behaviour`] is the job itself, with concurrent.futures' states: QUEUED (cancellable: the
//! job then never runs and its userdata is freed at once), RUNNING (`afut_cancel` returns false;
//! `set_running_or_notify_cancel` is the compare-and-swap in [`JobState::start`]), and done
//! (the future's own state). The userdata lives in the job until a worker takes it or a cancel
//! drops it, so it is freed exactly once on every path, outside every lock.
//!
//! Workers start lazily, one per submit that finds more queued jobs than available workers,
//! up to `max_workers`; idle ones wait on a condvar (no spinning). A worker counts as available
//! again as soon as its job function returns, before it frees the userdata and completes a
//! future the job left pending: so a caller that waited for that future and submits again
//! reuses the worker (deterministically, which concurrent.futures only does most of the time).
//! The pool lock is never held while C code runs.
//!
//! `run_in_executor` wraps the job's future onto a loop (`chain::wrap_future`: cancellation
//! chained both ways), keeps the wrapper alive and holds the loop's virtual clock while the job
//! is in flight.

use std::any::Any;
use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::JoinHandle;

use parking_lot::Condvar;

use crate::abi::*;
use crate::callback::{Owned, call_job};
use crate::futures::future::{Behaviour, Future};
use crate::lock::Mutex;
use crate::runtime::eventloop::Loop;
use crate::tasks::chain;

/// The stack of a worker: what a C programmer expects of a thread (glibc's usual default),
/// not Rust's 2 MiB.
const WORKER_STACK: usize = 8 << 20;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;

/// A job's function and userdata (freed when this is dropped).
struct JobCall {
    func: JobFn,
    data: Owned,
}

/// The behaviour of an executor future: the job and its concurrent.futures state.
struct JobState {
    state: AtomicU8,
    /// Until a worker takes it, or a cancel drops it.
    call: Mutex<Option<JobCall>>,
}

impl JobState {
    /// `set_running_or_notify_cancel`: the call to run, or None if the job was cancelled, or
    /// its future completed by someone else, before it started (its userdata is then freed
    /// here, on the worker).
    fn start(&self, fut: &Future) -> Option<JobCall> {
        if self.state.compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return None;
        }
        let call = self.call.lock().take();
        if fut.is_done() {
            drop(call);
            return None;
        }
        call
    }
}

impl Behaviour for JobState {
    fn cancel(&self, fut: &Future, msg: Option<CString>) -> bool {
        match self.state.compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // No worker will take it now: its userdata is freed here, after the callbacks.
                let call = self.call.lock().take();
                let cancelled = fut.cancel_plain(msg);
                drop(call);
                cancelled
            }
            // RUNNING: concurrent.futures refuses; once done, the plain rules apply (false,
            // and the unretrieved mark is cleared, SEMANTICS F12).
            Err(RUNNING) if !fut.is_done() => false,
            Err(_) => fut.cancel_plain(msg),
        }
    }

    fn pending_word(&self) -> Option<&'static str> {
        (self.state.load(Ordering::Acquire) == RUNNING).then_some("running")
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn job_of(fut: &Future) -> Option<&JobState> {
    fut.behaviour()?.as_any().downcast_ref::<JobState>()
}

/// The pool's bookkeeping, under one lock.
#[derive(Default)]
struct Pool {
    /// Futures of queued jobs (a cancelled one stays until a worker or a shutdown pops it).
    queue: VecDeque<Future>,
    /// Started and not yet exited.
    workers: usize,
    /// Of those, the ones not running a job function (waiting, starting or finishing).
    available: usize,
    /// Of those, the ones blocked on `work`.
    waiting: usize,
    /// Workers blocked in a `shutdown(wait = true)` called from their own job.
    in_shutdown: usize,
    shutdown: bool,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    max_workers: usize,
    pool: Mutex<Pool>,
    /// A job was queued, or the executor shut down.
    work: Condvar,
    /// A worker exited.
    exited: Condvar,
}

/// An executor (`afut_executor_t`).
pub(crate) struct Executor(Arc<Shared>);

impl Executor {
    /// `afut_executor_new`: no thread is started yet. 0 means the number of CPUs this process
    /// may run on.
    pub(crate) fn new(max_workers: usize) -> Executor {
        let max_workers =
            if max_workers == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { max_workers };
        Executor(Arc::new(Shared {
            max_workers,
            pool: Mutex::new(Pool::default()),
            work: Condvar::new(),
            exited: Condvar::new(),
        }))
    }

    /// `afut_executor_submit`: the job's new loop-less future. After shutdown (or if no worker
    /// could be started at all) the userdata comes back.
    pub(crate) fn submit(&self, func: JobFn, data: Owned) -> Result<Future, (afut_status_t, Owned)> {
        let job = JobState { state: AtomicU8::new(QUEUED), call: Mutex::new(Some(JobCall { func, data })) };
        let fut = Future::with_behaviour(None, Some(Box::new(job)));
        let take_back = |fut: &Future| job_of(fut).and_then(|j| j.call.lock().take()).map(|c| c.data);
        let shared = &self.0;
        let mut p = shared.pool.lock();
        if p.shutdown {
            drop(p);
            let data = take_back(&fut).expect("the job was not queued");
            return Err((AFUT_ERR_INVALID_STATE, data));
        }
        p.queue.push_back(fut.clone());
        if p.queue.len() > p.available && p.workers < shared.max_workers {
            let worker = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("afut-worker".into())
                .stack_size(WORKER_STACK)
                .spawn(move || worker_main(worker));
            match spawned {
                Ok(handle) => {
                    p.workers += 1;
                    p.available += 1;
                    p.threads.push(handle);
                }
                Err(_) if p.workers == 0 => {
                    // No worker at all would ever run it: refuse.
                    p.queue.pop_back();
                    drop(p);
                    let data = take_back(&fut).expect("the job was not taken");
                    return Err((AFUT_ERR_OS, data));
                }
                Err(_) => {} // the running workers will get to it
            }
        }
        if p.waiting > 0 {
            shared.work.notify_one();
        }
        Ok(fut)
    }

    /// `afut_executor_shutdown`: refuses new jobs; with `cancel_futures`, cancels the queued ones
    /// (their callbacks run on this thread, their userdata is freed before this returns); with
    /// `wait`, returns once every job is done and every worker has exited (called from a job of
    /// this executor: every other worker).
    pub(crate) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let shared = &self.0;
        let cancelled: Vec<Future> = {
            let mut p = shared.pool.lock();
            p.shutdown = true;
            if cancel_futures { p.queue.drain(..).collect() } else { Vec::new() }
        };
        shared.work.notify_all();
        for fut in cancelled {
            // The job's own cancel: frees the userdata (also of a job completed by someone else).
            fut.cancel(None);
        }
        if !wait {
            return;
        }
        let me = std::thread::current().id();
        let mut p = shared.pool.lock();
        let from_worker = p.threads.iter().any(|t| t.thread().id() == me);
        if from_worker {
            p.in_shutdown += 1;
        }
        while p.workers > p.in_shutdown {
            shared.exited.wait(p.raw());
        }
        if from_worker {
            p.in_shutdown -= 1;
        }
        let threads = std::mem::take(&mut p.threads);
        drop(p);
        for t in threads {
            if t.thread().id() == me {
                // Our own thread: detached (dropping the handle); it exits after its job.
                continue;
            }
            let _ = t.join();
        }
    }
}

/// A worker: takes jobs until the executor shuts down and the queue is empty.
fn worker_main(shared: Arc<Shared>) {
    let mut p = shared.pool.lock();
    loop {
        if let Some(fut) = p.queue.pop_front() {
            p.available -= 1;
            drop(p);
            // A panic here is an afut bug; the worker must survive it or shutdown would wait
            // for it forever.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(&shared, fut))).is_err() {
                eprintln!("afut: internal error in an executor worker (this is a bug in afut; please report it)");
            }
            p = shared.pool.lock();
            continue;
        }
        if p.shutdown {
            break;
        }
        p.waiting += 1;
        shared.work.wait(p.raw());
        p.waiting -= 1;
    }
    p.workers -= 1;
    p.available -= 1;
    drop(p);
    shared.exited.notify_all();
}

/// Runs one job: marks the worker available once the function returns, then frees the
/// userdata, then gives a future the job left pending a NULL result.
fn run_job(shared: &Shared, fut: Future) {
    let call = job_of(&fut).and_then(|j| j.start(&fut));
    if let Some(call) = &call {
        call_job(call.func, fut.as_ptr(), &call.data);
    }
    shared.pool.lock().available += 1;
    if call.is_some() {
        drop(call);
        if !fut.is_done() {
            let _ = fut.set_result(Owned::borrowed(std::ptr::null_mut()));
        }
    }
    drop(fut);
}

/// `afut_loop_run_in_executor`: the job's future wrapped onto `event_loop`, holding its virtual
/// clock until the job is done.
pub(crate) fn run_in_executor(
    event_loop: &Loop,
    executor: &Executor,
    func: JobFn,
    data: Owned,
) -> Result<Future, (afut_status_t, Owned)> {
    if event_loop.is_closed() {
        return Err((AFUT_ERR_LOOP_CLOSED, data));
    }
    let hold = event_loop.hold_clock();
    let inner = executor.submit(func, data)?;
    // The job's future holds the wrapper until it is done (a caller may drop it at once and
    // still get its callbacks), and the hold goes only once the copy is queued on the loop.
    Ok(chain::wrap_future_held(event_loop, &inner, hold))
}
