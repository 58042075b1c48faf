//! Task: asyncio's `Task` for C, driven by a step function instead of a coroutine
//! (SEMANTICS.md T1-T6).
//!
//! A task is a future (same handle, same functions) with a [`Behaviour`] attached. Its step
//! runs on the loop: first on the iteration after creation, then one iteration after each
//! future it awaits is done. Inside a step the C code completes the task, awaits one future,
//! or returns doing neither (a yield, or the end of a cancelled task).
//!
//! Who keeps a pending task alive (gh-91887): the queued step holds a reference while a step
//! is scheduled, and the awaited future's done-callback holds one while the task awaits. So
//! a pending task is never freed while its loop can still run it; nobody needs to keep the
//! handle. The task releases its userdata (and what it awaits) as soon as it is done.

use std::any::Any;
use std::ffi::{CString, c_char};

use crate::lock::Mutex;

use crate::abi::*;
use crate::callback::{Callback, Owned, RawPtr, call_step};
use crate::futures::done::next_token;
use crate::futures::future::{Behaviour, DoneCb, Future};
use crate::runtime::eventloop::Loop;
use crate::thread_id;

struct TaskInner {
    /// The C userdata; taken (and freed) once the task is done.
    userdata: Option<Owned>,
    /// asyncio `_fut_waiter`: the future the task awaits, set by `afut_task_await`.
    awaited: Option<Future>,
    /// The token of the wakeup callback registered on `awaited`.
    await_token: Option<u64>,
    /// The thread running the step right now, if any.
    stepping: Option<u64>,
    /// asyncio `_must_cancel`: a cancel request not delivered through an awaited future.
    must_cancel: bool,
    /// Index into `messages` of the pending cancel message (None: no message).
    cancel_message: Option<usize>,
    /// Every cancel message ever requested: kept for the task's life so that a pointer
    /// returned by `afut_task_cancel_requested` never dangles.
    messages: Vec<CString>,
    /// asyncio `_num_cancels_requested` (`cancelling()`).
    num_cancels: u32,
}

impl TaskInner {
    /// Forgets the awaited future (and its wakeup's token); the caller drops it unlocked.
    fn stop_awaiting(&mut self) -> Option<Future> {
        self.await_token = None;
        self.awaited.take()
    }
}

/// The state of a task.
pub(crate) struct Task {
    step: StepFn,
    inner: Mutex<TaskInner>,
}

impl Task {
    /// Records a cancel request for the next step (asyncio `_must_cancel`).
    fn request_cancel(&self, msg: Option<CString>) {
        let mut g = self.inner.lock();
        g.must_cancel = true;
        g.cancel_message = msg.map(|m| {
            g.messages.push(m);
            g.messages.len() - 1
        });
    }

    fn of(fut: &Future) -> Option<&Task> {
        fut.behaviour()?.as_any().downcast_ref::<Task>()
    }

    fn pending_message(&self, g: &TaskInner) -> Option<CString> {
        g.cancel_message.map(|i| g.messages[i].clone())
    }
}

impl Behaviour for Task {
    fn is_task(&self) -> bool {
        true
    }

    /// Only the step may complete its task, on the thread running it, while it awaits nothing
    /// and no cancel is pending (asyncio: `Task.set_result` raises RuntimeError; a return while
    /// `_must_cancel` is set cancels instead, test_cancel_at_end).
    fn check_complete(&self, _fut: &Future) -> afut_status_t {
        let g = self.inner.lock();
        if g.stepping != Some(thread_id::current()) || g.awaited.is_some() {
            AFUT_ERR_INVALID_STATE
        } else if g.must_cancel {
            AFUT_ERR_CANCELLED
        } else {
            AFUT_OK
        }
    }

    /// asyncio `Task.cancel(msg)` (T4): the cancel goes to the awaited future; if that one
    /// refuses it (already done), the request waits for the next step (`_must_cancel`).
    fn cancel(&self, fut: &Future, msg: Option<CString>) -> bool {
        // Read before the task's lock is taken: the two locks never nest. Holding the task's
        // lock would not keep the task pending anyway (the step completes it without that
        // lock), so this is the same check asyncio makes, with the same race.
        if fut.is_done() {
            // False, and clears the unretrieved mark (T6).
            return fut.cancel_plain(msg);
        }
        let waiter = {
            let mut g = self.inner.lock();
            g.num_cancels += 1;
            g.awaited.clone()
        };
        match waiter {
            Some(waiter) => {
                let task = fut.clone();
                let pending = msg.clone();
                waiter.cancel_propagated(
                    msg,
                    Some(Box::new(move |cancelled| {
                        if !cancelled && let Some(t) = Task::of(&task) {
                            t.request_cancel(pending);
                        }
                    })),
                );
                // `waiter`, our own reference, goes here with no lock held: it may be the
                // last one (its value_free or never-retrieved report then runs).
            }
            None => self.request_cancel(msg),
        }
        true
    }

    /// The cancel came back round a cycle of awaits (this task awaits, through others, a
    /// future whose cancel leads back to it). The request is recorded for the next step, as
    /// asyncio records it (`_must_cancel`). If what the task awaits is a future that its own
    /// cancel ends (a plain future, a gather, ...), that cancel is under way further up and
    /// wakes the task. If it is a task, it can only finish after this one does: the task stops
    /// awaiting it, and its next step runs with the cancel pending. asyncio recurses until
    /// RecursionError in such cycles; afut ends them.
    fn cancel_again(&self, fut: &Future, msg: Option<CString>) -> bool {
        if fut.is_done() {
            return false;
        }
        let (awaited, token) = {
            let mut g = self.inner.lock();
            g.must_cancel = true;
            g.cancel_message = msg.map(|m| {
                g.messages.push(m);
                g.messages.len() - 1
            });
            let awaits_task = g.awaited.as_ref().and_then(|a| a.behaviour()).is_some_and(|b| b.is_task());
            if !awaits_task {
                return true;
            }
            let token = g.await_token;
            (g.stop_awaiting(), token)
        };
        if let (Some(awaited), Some(token)) = (&awaited, token) {
            // If the wakeup already left the awaited future's list, it is queued and runs the
            // step itself.
            if awaited.remove_token(token) {
                schedule_step(fut);
            }
        }
        drop(awaited); // with no lock held
        true
    }

    /// asyncio's Task repr says "cancelling" while cancel requests are pending (T5).
    fn pending_word(&self) -> Option<&'static str> {
        (self.inner.lock().num_cancels > 0).then_some("cancelling")
    }

    /// A pending task can never run again once its loop is closed: end it now, as asyncio
    /// reports a pending task that goes away. Releasing the awaited future also breaks the
    /// task <-> awaited-future cycle that would otherwise outlive the loop.
    fn loop_closed(&self, fut: &Future) {
        if fut.is_done() {
            return;
        }
        if let Some(l) = fut.event_loop() {
            l.report(c"Task was destroyed but it is pending!", Some(fut.inner()), None);
        }
        finish_cancelled(fut, Some(c"the loop was closed".to_owned()));
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `afut_task_new`: a task whose first step runs on the next iteration of `event_loop`.
/// On failure (a closed loop) the userdata comes back unfreed.
pub(crate) fn create(event_loop: &Loop, step: StepFn, userdata: Owned) -> Result<Future, (afut_status_t, Owned)> {
    let task = Task {
        step,
        inner: Mutex::new(TaskInner {
            userdata: Some(userdata),
            awaited: None,
            await_token: None,
            stepping: None,
            must_cancel: false,
            cancel_message: None,
            messages: Vec::new(),
            num_cancels: 0,
        }),
    };
    let fut = Future::with_behaviour(Some(event_loop.link()), Some(Box::new(task)));
    let t = fut.clone();
    if let Err((status, cb)) = event_loop.schedule(Callback::rust(move || run_step(&t, None)), None) {
        drop(cb);
        let userdata = Task::of(&fut).and_then(|t| t.inner.lock().userdata.take()).expect("the task's userdata");
        return Err((status, userdata));
    }
    // After the schedule: a close that comes between the two still ends the task (here).
    event_loop.watch_close(&fut);
    Ok(fut)
}

/// Schedules the next step (a yield). A closed loop can never run it: the task then ends
/// cancelled, releasing its userdata.
fn schedule_step(task: &Future) {
    let Some(l) = Loop::of(task) else { return };
    let t = task.clone();
    if let Err((_, cb)) = l.schedule(Callback::rust(move || run_step(&t, None)), None) {
        drop(cb);
        finish_cancelled(task, None);
    }
}

fn finish_cancelled(task: &Future, msg: Option<CString>) {
    let Some(t) = Task::of(task) else { return };
    task.cancel_plain(msg);
    let (userdata, awaited) = {
        let mut g = t.inner.lock();
        (g.userdata.take(), g.stop_awaiting())
    };
    drop(userdata);
    drop(awaited);
}

/// asyncio `__step` (T2) followed by what the step left behind.
fn run_step(task: &Future, awaited: Option<Future>) {
    let Some(t) = Task::of(task) else { return };
    // Read outside the task's lock (the locks never nest). No other thread can complete the
    // task before `stepping` is set: completing it takes the step's own thread.
    if task.is_done() {
        return;
    }
    let (userdata, previous) = {
        let mut g = t.inner.lock();
        g.stepping = Some(thread_id::current());
        (g.userdata.as_ref().map_or(std::ptr::null_mut(), |u| u.ptr()), g.stop_awaiting())
    };
    // Dropped with no lock held: it may be the last reference (C destructors may run).
    drop(previous);
    call_step(t.step, task.as_ptr(), awaited.as_ref().map_or(std::ptr::null_mut(), |a| a.as_ptr()), RawPtr(userdata));

    // Whether the step completed the task, read before the task's lock is taken. While
    // `stepping` names this thread, no other thread can complete the task.
    let done = task.is_done();
    let mut g = t.inner.lock();
    g.stepping = None;
    if done {
        let (userdata, waiter) = (g.userdata.take(), g.stop_awaiting());
        drop(g);
        drop(userdata);
        drop(waiter);
        return;
    }
    if g.awaited.is_some() {
        return;
    }
    // The step neither completed the task nor awaited anything.
    let cancel = if g.must_cancel {
        g.must_cancel = false;
        Some(t.pending_message(&g))
    } else if awaited.as_ref().is_some_and(|a| a.is_cancelled()) {
        Some(awaited.as_ref().and_then(|a| a.cancel_message_owned()))
    } else {
        None
    };
    drop(g);
    match cancel {
        Some(msg) => finish_cancelled(task, msg),
        None => schedule_step(task),
    }
}

/// `afut_task_await`: called from inside the task's step.
pub(crate) fn await_future(task: &Future, fut: &Future) -> afut_status_t {
    let Some(t) = Task::of(task) else { return AFUT_ERR_INVALID_ARGUMENT };
    if task.same(fut) {
        return AFUT_ERR_INVALID_ARGUMENT; // 'Task cannot await on itself'
    }
    if !Loop::of(task).is_some_and(|l| l.owns(fut)) {
        return AFUT_ERR_INVALID_ARGUMENT; // a future of another loop, or loop-less
    }
    let token = next_token();
    // Read before the task's lock is taken (the locks never nest); only this thread, the
    // step's, could complete the task meanwhile.
    let done = task.is_done();
    let (must_cancel, msg) = {
        let mut g = t.inner.lock();
        if g.stepping != Some(thread_id::current()) || g.awaited.is_some() || done {
            return AFUT_ERR_INVALID_STATE;
        }
        g.awaited = Some(fut.clone());
        g.await_token = Some(token);
        (g.must_cancel, t.pending_message(&g))
    };
    let me = task.clone();
    let wakeup = DoneCb::rust(token, move |f: &Future| run_step(&me, Some(f.clone())));
    if let Err((status, cb)) = fut.add_done_callback(wakeup) {
        drop(cb);
        let mine = t.inner.lock().stop_awaiting();
        drop(mine);
        return status;
    }
    if must_cancel && fut.cancel(msg) {
        t.inner.lock().must_cancel = false;
    }
    AFUT_OK
}

/// `afut_task_cancelling` (T5): the number of pending cancel requests; None if not a task.
pub(crate) fn cancelling(task: &Future) -> Option<u32> {
    Task::of(task).map(|t| t.inner.lock().num_cancels)
}

/// `afut_task_uncancel` (T5, 3.13): decrements the count (never below 0); at 0 it also
/// withdraws a pending cancel request. Returns the new count.
pub(crate) fn uncancel(task: &Future) -> Option<u32> {
    let t = Task::of(task)?;
    let mut g = t.inner.lock();
    if g.num_cancels > 0 {
        g.num_cancels -= 1;
        if g.num_cancels == 0 {
            g.must_cancel = false;
        }
    }
    Some(g.num_cancels)
}

/// `afut_task_cancel_requested`: whether a cancel request is pending (not delivered through
/// an awaited future), and its message (borrowed; lives as long as the task).
pub(crate) fn cancel_requested(task: &Future) -> Option<(bool, *const c_char)> {
    let t = Task::of(task)?;
    let g = t.inner.lock();
    let msg = match (g.must_cancel, g.cancel_message) {
        (true, Some(i)) => g.messages[i].as_ptr(),
        _ => std::ptr::null(),
    };
    Some((g.must_cancel, msg))
}

/// `afut_task_take_cancel`: from inside the step, takes a pending cancel request (asyncio
/// clears `_must_cancel` when it throws CancelledError into the coroutine). Returns None if
/// not a task, Some(None) if nothing was taken (or not called from the step), else the
/// message pointer (borrowed; lives as long as the task).
pub(crate) fn take_cancel(task: &Future) -> Option<Option<*const c_char>> {
    let t = Task::of(task)?;
    let mut g = t.inner.lock();
    if g.stepping != Some(thread_id::current()) || !g.must_cancel {
        return Some(None);
    }
    g.must_cancel = false;
    Some(Some(g.cancel_message.map_or(std::ptr::null(), |i| g.messages[i].as_ptr())))
}

/// True if `fut` is a task.
pub(crate) fn is_task(fut: &Future) -> bool {
    Task::of(fut).is_some()
}
