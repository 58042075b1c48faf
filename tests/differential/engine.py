"""The two executions of a scenario: in CPython's asyncio (the oracle) and in afut (ctypes).

Both worlds interpret the same scenario (see scenario.py for the language) with the same
interpreter (`World`); only the primitives differ. Each produces an event log: a list of
tuples of plain values, compared by compare.py.

Objects live in numbered slots. A slot holds the harness's own reference (one afut
reference, or one Python reference in `World.slots`); `unref` drops it. An action on a slot
the harness does not hold (not created yet, or dropped) is skipped, identically in both
worlds. Scripts of callbacks are bounded: each callback id runs its actions at most
`CALLBACK_BUDGET` times per scenario (later invocations are logged and do nothing), so no
scenario grows without end.
"""

import asyncio
import ctypes
import gc
import math
import types
import weakref

import binding as B

CALLBACK_BUDGET = 3

# --------------------------------------------------------------------------------------------
# outcome vocabulary, shared by both worlds
#   ("ok", v)                 a result; v an int (NULL / None is 0), or "list" for a gather's
#                             value read through another future
#   ("gather", (o1, o2, ...)) the result of a gather, read directly: each child's outcome
#   ("exc", code, msg)        an exception (AFUT_ERR_CANCELLED -2 for asyncio's
#                             CancelledError stored as an exception, -8 for TimeoutError)
#   ("cancelled", msg)        cancelled, msg None for none
#   ("pending",)              not done (InvalidStateError)
#   ("none",)                 exception() of a future with a result


# Every exception that may end up stored in a future (the application's, and asyncio's
# CancelledError, whose constructor is wrapped below): see AsyncioWorld.release_frames.
LIVE_EXCEPTIONS = weakref.WeakSet()


class AppError(Exception):
    """The application exception of the Python world: an afut exception code and message."""

    def __init__(self, code):
        super().__init__(f"e{code}")
        self.code = code
        self.msg = f"e{code}"
        LIVE_EXCEPTIONS.add(self)


class WouldBlock(BaseException):
    """asyncio's loop would wait for I/O or a timer with nothing ready (a harness bug: the
    same run in afut would block forever)."""


# --------------------------------------------------------------------------------------------
# the common interpreter

class World:
    name = "?"

    def __init__(self, sc):
        self.sc = sc
        self.events = []
        self.slots = {}          # slot -> object (the harness holds one reference)
        self.created = set()     # slots ever created
        self.kind = {}           # slot -> "future" | "gather" | "shield" | "wait_for" | "task"
        self.gather_n = {}       # gather slot -> number of arguments
        self.slot_of = {}        # object key -> slot (the latest slot created for it)
        self.handles = {}        # hid -> handle
        self.h_cb = {}           # hid -> callback id
        self.h_started = set()   # hids whose callback started
        self.budget = {}         # callback id -> invocations
        self.stepping = None     # slot of the task whose step is running
        self.ticker = None
        self.tick_n = 0
        self.tick_k = 0
        self.task_tid = {}       # task slot -> task script id

    # ----- logging -----
    def log(self, *ev):
        self.events.append(ev)

    def report(self, kind, slot, code):
        self.events.append(("report", kind, slot, code))

    # ----- slots -----
    def get(self, s):
        return self.slots.get(s)

    def bind(self, s, obj, kind):
        self.slots[s] = obj
        self.created.add(s)
        self.kind[s] = kind
        self.slot_of[self.key(obj)] = s

    def slot_for(self, obj):
        return self.slot_of.get(self.key(obj), "?")

    # ----- the interpreter -----
    def run_scenario(self):
        self.setup()
        try:
            for op in self.sc["ops"]:
                self.do(op, top=True)
        finally:
            self.teardown()
        return self.events

    def run_actions(self, actions):
        for a in actions:
            self.do(a, top=False)

    def do(self, op, top):
        k = op[0]
        if k in ("new", "gather", "shield", "wait_for", "task"):
            s = op[1]
            if s in self.created:
                return
            if k == "new":
                self.bind(s, self.p_new(), "future")
            elif k == "gather":
                objs = [self.get(i) for i in op[2]]
                if any(o is None for o in objs):
                    return
                self.gather_n[s] = len(objs)
                self.bind(s, self.p_gather(objs, op[3]), "gather")
            elif k == "shield":
                inner = self.get(op[2])
                if inner is None:
                    return
                outer = self.p_shield(inner)
                if self.key(outer) == self.key(inner):
                    self.note("alias", s, op[2])  # shield(done future) returns the future
                self.bind(s, outer, "shield")
            elif k == "wait_for":
                inner = self.get(op[2])
                if inner is None:
                    return
                self.bind(s, self.p_wait_for(s, inner, op[3]), "wait_for")
            else:
                self.task_tid[s] = op[2]
                self.bind(s, self.p_task(s, op[2]), "task")
            return
        if k in ("call_soon", "call_later", "call_at"):
            hid, cb = op[1], op[-1]
            if hid in self.handles:
                return
            self.h_cb[hid] = cb
            if k == "call_soon":
                h = self.p_call_soon(hid)
            elif k == "call_later":
                h = self.p_call_later(hid, op[2])
            else:
                h = self.p_call_at(hid, op[2])
            self.handles[hid] = h
            return
        if k == "cancel_handle":
            if op[1] in self.handles:
                self.log("cancel_handle", op[1], self.p_cancel_handle(op[1]))
            return
        if k == "stop":
            self.log("stop")
            self.p_stop()
            return
        if k == "run_once":
            self.log("run_once", self.p_run_once())
            return
        if k == "run_forever":
            self.start_ticker(op[1])
            self.log("run_forever", self.p_run_forever())
            self.stop_ticker()
            return
        s = op[1]
        if k == "unref":
            if s in self.slots:
                self.unref(s)
            return
        obj = self.get(s)
        if obj is None:
            return
        if k == "ruc":
            self.start_ticker(op[2])
            st = self.p_ruc(obj)
            obj = None
            self.log("ruc", s, st)
            self.stop_ticker()
        elif k == "nested_run":
            self.log("nested_run", s, self.p_nested_run(obj))
        elif k == "set_result":
            if self.stepping == s:
                return  # the task's own completion is its script's terminator
            self.log("set_result", s, self.p_set_result(obj, op[2]))
        elif k == "set_exception":
            if self.stepping == s:
                return
            self.log("set_exception", s, self.p_set_exception(obj, op[2]))
        elif k == "cancel":
            self.log("cancel", s, self.p_cancel(obj, op[2]))
        elif k == "result":
            self.log("result", s, self.p_result(s, obj))
        elif k == "exception":
            self.log("exception", s, self.p_exception(s, obj))
        elif k == "state":
            self.log("state", s, *self.p_state(obj))
        elif k == "cancelling":
            self.log("cancelling", s, self.p_cancelling(obj), self.mirror_extra(s))
        elif k == "uncancel":
            self.log("uncancel", s, self.p_uncancel(obj), self.mirror_extra(s))
        elif k == "add_cb":
            self.log("add_cb", s, op[2], self.p_add_cb(obj, op[2]))
        elif k == "remove_cb":
            self.log("remove_cb", s, op[2], self.p_remove_cb(obj, op[2]))
        else:
            raise ValueError(f"unknown op {op!r}")

    def mirror_extra(self, s):
        return 0

    def note(self, *ev):
        pass

    def unref(self, s):
        """Drops the harness's reference to slot s: logged first, then released, so that
        the reports it causes follow the event in both worlds."""
        self.log("unref", s)
        self.p_release(self.slots.pop(s))

    # ----- callbacks (called by the primitives' trampolines) -----
    def on_done_cb(self, cb, fut_obj):
        self.log("cb", cb, self.slot_for(fut_obj))
        self.run_script(cb)

    def on_handle(self, hid):
        self.h_started.add(hid)
        cb = self.h_cb[hid]
        self.log("h", hid, cb)
        self.run_script(cb)

    def run_script(self, cb):
        n = self.budget.get(cb, 0) + 1
        self.budget[cb] = n
        if n > CALLBACK_BUDGET:
            return
        self.run_actions(self.sc["scripts"][cb])

    def on_tick(self):
        self.tick_n += 1
        self.log("tick", self.tick_n)
        if self.tick_n >= self.tick_k:
            self.ticker = None
            self.p_stop()
        else:
            self.ticker = self.p_schedule_tick()

    def start_ticker(self, k):
        """A blocking run (run_forever / run_until_complete) never waits in either world: a
        ticker callback re-schedules itself every iteration and stops the loop after k
        iterations. Its events also mark the iteration boundaries of the run."""
        self.tick_n = 0
        self.tick_k = k
        self.ticker = self.p_schedule_tick()

    def stop_ticker(self):
        if self.ticker is not None:
            self.p_cancel_tick(self.ticker)
            self.ticker = None

    # ----- teardown -----
    def teardown(self):
        self.log("teardown")
        for s in sorted(self.slots):
            self.log("final", s, *self.p_peek(s, self.slots[s]))
        # logged first: what the close itself reports (afut ends pending tasks and releases
        # what they awaited) belongs to the teardown, compared as a multiset
        self.log("close")
        self.p_close()
        for s in sorted(self.slots):
            self.unref(s)
        self.p_free()
        self.log("end")


# --------------------------------------------------------------------------------------------
# asyncio

class _NullSelector:
    """The selector of DiffLoop: no I/O. A blocking run that would wait raises WouldBlock
    (the ticker makes this impossible for valid scenarios); run_once never waits, as
    afut_loop_run_once(loop, 0) does not."""

    def __init__(self):
        self.may_block = False

    def select(self, timeout):
        if self.may_block and (timeout is None or timeout > 0):
            raise WouldBlock()
        return []

    def close(self):
        pass


class DiffLoop(asyncio.BaseEventLoop):
    """asyncio's own BaseEventLoop (its _run_once, call_soon, timers, run_until_complete,
    run_forever, stop, close are all the stdlib's), with no selector and a clock that moves
    forward by 1 us at every reading: strictly increasing, so that two timers never have the
    same deadline (asyncio leaves their order undefined, afut runs them FIFO), while the
    deadlines of a scenario are 10 s apart: afut's real clock orders them the same way."""

    handles_run = 0

    def __init__(self):
        super().__init__()
        self._selector = _NullSelector()
        self._vt = 1000.0
        self._clock_resolution = 0.0

    def time(self):
        self._vt += 1e-6
        return self._vt

    def _process_events(self, event_list):
        pass

    def _write_to_self(self):
        pass


_orig_handle_run = asyncio.events.Handle._run


def _counting_handle_run(self):
    DiffLoop.handles_run += 1
    return _orig_handle_run(self)


asyncio.events.Handle._run = _counting_handle_run


# Instrumentation of asyncio for the comparator's rules (it records, it changes nothing).

class Task(asyncio.Task):
    """asyncio.Task, recording when a pending wait_for task is asked to cancel (afut ends its
    wait_for CANCELLED at once). Named Task so that its reports read as asyncio's."""

    def cancel(self, msg=None):
        w = AsyncioWorld.current
        if w is not None and not self.done():
            w.note("wf_timing", w.slot_for(self), "wait_for cancelled while pending")
        return super().cancel(msg)


_orig_gather_cancel = asyncio.tasks._GatheringFuture.cancel


def _noting_gather_cancel(self, msg=None):
    w = AsyncioWorld.current
    if w is not None:
        if not self.done():
            w.note("gather_cancel", w.slot_for(self))
        elif self._log_traceback:
            # returns False before Future.cancel: the never-retrieved mark stays
            w.note("gather_cancel_done", w.slot_for(self))
    return _orig_gather_cancel(self, msg)


asyncio.tasks._GatheringFuture.cancel = _noting_gather_cancel

_orig_ruc_cb = asyncio.base_events._run_until_complete_cb


_orig_cancelled_error_init = asyncio.CancelledError.__init__


def _registering_cancelled_error_init(self, *args):
    _orig_cancelled_error_init(self, *args)
    LIVE_EXCEPTIONS.add(self)


asyncio.CancelledError.__init__ = _registering_cancelled_error_init


def _noting_ruc_cb(fut):
    w = AsyncioWorld.current
    if w is not None and fut is not w.ruc_active:
        w.note("stale_stopper", w.slot_for(fut))
    _orig_ruc_cb(fut)


asyncio.base_events._run_until_complete_cb = _noting_ruc_cb


@types.coroutine
def _bare_yield():
    yield


def _py_exc_outcome(e):
    if isinstance(e, AppError):
        return ("exc", e.code, e.msg)
    if isinstance(e, asyncio.CancelledError):
        return ("exc", B.AFUT_ERR_CANCELLED, e.args[0] if e.args else None)
    if isinstance(e, TimeoutError):
        # asyncio.wait_for raises TimeoutError(); afut's timed-out wait_for fails with code
        # AFUT_ERR_TIMEOUT and the message "timed out" (a representation, not a difference).
        return ("exc", B.AFUT_ERR_TIMEOUT, "timed out")
    return ("exc", "python:" + type(e).__name__, str(e))


class AsyncioWorld(World):
    name = "asyncio"
    current = None

    def key(self, obj):
        return id(obj)

    def log(self, *ev):
        # Every object that became garbage before this event is finalized first, so that
        # "never retrieved" reports land where afut (reference counted, no cycles to wait
        # for) makes them: when the last reference goes.
        self.release_frames()
        # Reports made inside gc.collect() come from unreachable reference cycles (what a
        # reference count frees goes at once, outside it): see the rule gc-cycle-until-close.
        self.in_gc = True
        try:
            gc.collect()
        finally:
            self.in_gc = False
        self.events.append(ev)

    def report(self, kind, slot, code):
        if getattr(self, "in_gc", False) and kind.endswith("_never_retrieved"):
            self.events.append(("note", "cycle_report", kind, slot, code))
        else:
            self.events.append(("report", kind, slot, code))

    def release_frames(self):
        """A Python exception keeps the frames it was raised through, and each of them its
        caller (f_back), down the whole stack of the moment: a task that fails inside
        run_until_complete(F) keeps that call's `future` local, F, alive for as long as the
        task lives, and asyncio's wait_for keeps its task alive through the timeout context
        in its frame for as long as the exception object lives. A C exception holds nothing
        of the kind. So the locals of every frame that has returned and that an exception
        known here still reaches are dropped (frame.clear(); a frame still running is
        retried at the next event). Only finished frames are cleared: no behaviour of
        asyncio changes, only what its tracebacks keep alive."""
        todo = [e for e in LIVE_EXCEPTIONS if e.__traceback__ is not None
                or e.__context__ is not None]
        for f in self.futs:
            e = getattr(f, "_exception", None)
            if e is not None:
                todo.append(e)
        frames = list(self.stuck_frames.values())
        self.stuck_frames = {}
        seen = set()
        seen_tb = self.seen_tb
        while todo:
            e = todo.pop()
            if id(e) in seen:
                continue
            seen.add(id(e))
            tb = e.__traceback__
            # a re-raise prepends to the chain: stop at the part already walked
            while tb is not None and id(tb) not in seen_tb:
                seen_tb[id(tb)] = tb
                frames.append(tb.tb_frame)
                tb = tb.tb_next
            for x in (e.__cause__, e.__context__):
                if x is not None:
                    todo.append(x)
        cleared = self.cleared
        for fr in frames:
            while fr is not None and id(fr) not in cleared:
                try:
                    fr.clear()
                except RuntimeError:
                    # still running (its callers too), or a suspended coroutine: later
                    self.stuck_frames[id(fr)] = fr
                    break
                cleared[id(fr)] = fr
                fr = fr.f_back

    def bind(self, s, obj, kind):
        World.bind(self, s, obj, kind)
        self.futs.add(obj)

    def setup(self):
        AsyncioWorld.current = self
        self.futs = weakref.WeakSet()
        self.stuck_frames = {}
        self.cleared = {}   # id -> frame (kept, so that an id is not reused meanwhile)
        self.seen_tb = {}   # id -> traceback
        self.ruc_active = None
        self.loop = DiffLoop()
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._handler)
        self.cbfn = {}

    def _handler(self, loop, ctx):
        msg = ctx.get("message", "")
        fut = ctx.get("future") or ctx.get("task")
        exc = ctx.get("exception")
        slot = self.slot_for(fut) if fut is not None else None
        code = _py_exc_outcome(exc)[1] if exc is not None else None
        if msg.endswith("exception was never retrieved"):
            # asyncio names the future's class (_GatheringFuture for a gather); afut's message
            # is "Future ..." or "Task ...": what is compared is which of the two it is.
            kind = "task" if isinstance(fut, asyncio.Task) else "future"
            self.report(kind + "_never_retrieved", slot, code)
        elif msg == "Task was destroyed but it is pending!":
            self.report("destroyed_pending", slot, None)
        elif msg.startswith("Exception in callback"):
            h = ctx.get("handle")
            cb = getattr(getattr(h, "_callback", None), "__qualname__", "?")
            self.report("callback_error:" + cb, slot,
                        type(exc).__name__ if exc is not None else None)
        else:
            self.report("other:" + msg, slot, type(exc).__name__ if exc is not None else None)

    def _cbfn(self, cb):
        f = self.cbfn.get(cb)
        if f is None:
            def f(fut, cb=cb):
                self.on_done_cb(cb, fut)
            self.cbfn[cb] = f
        return f

    # futures
    def p_new(self):
        return self.loop.create_future()

    def p_set_result(self, f, v):
        try:
            f.set_result(v)
            return "ok"
        except asyncio.InvalidStateError:
            return "invalid_state"
        except RuntimeError:  # Task.set_result: afut AFUT_ERR_INVALID_STATE
            return "invalid_state"

    def p_set_exception(self, f, code):
        try:
            f.set_exception(AppError(code))
            return "ok"
        except asyncio.InvalidStateError:
            return "invalid_state"
        except RuntimeError:
            return "invalid_state"

    def p_cancel(self, f, msg):
        return bool(f.cancel(msg))

    def render_ok(self, s, f, v):
        if s is not None and self.kind.get(s) == "gather":
            return ("gather", tuple(self.peek_outcome(c) for c in getattr(f, "_children", ())))
        if isinstance(v, list):
            # a gather's value seen through another future; afut's n == 0 gather has a NULL
            # result: the C form of []
            return ("ok", "list") if v else ("ok", 0)
        return ("ok", 0 if v is None else v)

    def p_result(self, s, f):
        try:
            v = f.result()
        except asyncio.CancelledError as e:
            e.__traceback__ = None
            if f.cancelled():
                return ("cancelled", e.args[0] if e.args else None)
            return _py_exc_outcome(e)
        except asyncio.InvalidStateError:
            return ("pending",)
        except BaseException as e:
            e.__traceback__ = None
            return _py_exc_outcome(e)
        return self.render_ok(s, f, v)

    def p_exception(self, s, f):
        try:
            e = f.exception()
        except asyncio.CancelledError as c:
            c.__traceback__ = None
            return ("cancelled", c.args[0] if c.args else None)
        except asyncio.InvalidStateError:
            return ("pending",)
        if e is None:
            return ("none",)
        return _py_exc_outcome(e)

    def p_state(self, f):
        return (f.done(), f.cancelled())

    def p_cancelling(self, f):
        return f.cancelling() if isinstance(f, asyncio.Task) else -1

    def p_uncancel(self, f):
        return f.uncancel() if isinstance(f, asyncio.Task) else -1

    def p_add_cb(self, f, cb):
        f.add_done_callback(self._cbfn(cb))
        return "ok"

    def p_remove_cb(self, f, cb):
        return f.remove_done_callback(self._cbfn(cb))

    def p_release(self, f):
        pass  # the reference went with the slot; a cycle is collected at the next event

    def peek_outcome(self, f):
        """The outcome without retrieving anything (asyncio's private fields)."""
        st = f._state
        if st == "PENDING":
            return ("pending",)
        if st == "CANCELLED":
            return ("cancelled", f._cancel_message)
        if f._exception is not None:
            return _py_exc_outcome(f._exception)
        v = f._result
        if isinstance(v, list):
            return ("ok", "list") if v else ("ok", 0)
        return ("ok", 0 if v is None else v)

    def p_peek(self, s, f):
        if self.kind.get(s) == "gather" and f._state == "FINISHED" and f._exception is None:
            out = ("gather", tuple(self.peek_outcome(c) for c in getattr(f, "_children", ())))
        else:
            out = self.peek_outcome(f)
        return (f._state.lower(), out, len(f._callbacks or ()))

    # handles
    def _hcall(self, hid):
        self.on_handle(hid)

    def p_call_soon(self, hid):
        return self.loop.call_soon(self._hcall, hid)

    def p_call_later(self, hid, delay):
        return self.loop.call_later(delay, self._hcall, hid)

    def p_call_at(self, hid, offset):
        return self.loop.call_at(self.loop.time() + offset, self._hcall, hid)

    def p_cancel_handle(self, hid):
        # asyncio's Handle.cancel() returns None; afut_loop_cancel's bool is "this call
        # cancelled a callback that had not started", which is this:
        h = self.handles[hid]
        was = not h.cancelled() and hid not in self.h_started
        h.cancel()
        return was

    def p_stop(self):
        self.loop.stop()

    def p_schedule_tick(self):
        return self.loop.call_soon(self.on_tick)

    def p_cancel_tick(self, h):
        h.cancel()

    # combinators and tasks
    def p_gather(self, objs, rexc):
        return asyncio.gather(*objs, return_exceptions=rexc)

    def p_shield(self, inner):
        return asyncio.shield(inner)

    def p_wait_for(self, s, inner, timeout):
        # asyncio.wait_for is a coroutine; as a future it runs in a task. afut's wait_for
        # registers on its inner future at creation, and on a done inner its callback is
        # queued at creation. The asyncio task that behaves the same: started eagerly
        # (asyncio's eager_start, 3.12+) when the inner is pending, so that it registers at
        # once; started normally (its first step queued at creation) when the inner is done.
        # For an eager start the loop is marked running if it is not.
        t = None if timeout == math.inf else timeout
        if inner.done():
            return Task(asyncio.wait_for(inner, t), loop=self.loop)
        if timeout <= 0:
            self.note("wf_timing", s, "timeout <= 0 with the inner pending")
        running = self.loop.is_running()
        if not running:
            self._mark_running()
        try:
            return Task(asyncio.wait_for(inner, t), loop=self.loop, eager_start=True)
        finally:
            if not running:
                self._unmark_running()

    def note(self, *ev):
        """Annotations for the comparator's rules; never compared themselves."""
        self.events.append(("note",) + ev)

    def p_task(self, s, tid):
        return self.loop.create_task(self._coro(s, tid))

    async def _coro(self, T, tid):
        for seg in self.sc["tasks"][tid]:
            self.stepping = T
            try:
                self.run_actions(seg["actions"])
            finally:
                self.stepping = None
            term = seg["term"]
            kind = term[0]
            if kind == "return":
                return term[1]
            if kind == "raise":
                raise AppError(term[1])
            fut = self.get(term[1]) if kind == "await" else None
            if kind == "await" and (fut is None or fut is self.get(T)):
                kind = "yield"
            aw = term[1] if kind == "await" else None
            try:
                if kind == "await":
                    v = await fut
                    out = self.render_ok(None, fut, v)
                else:
                    fut = None
                    await _bare_yield()
                    out = ("yield",)
            except asyncio.CancelledError as e:
                fut = None
                e.__traceback__ = None
                self.log("resume", T, aw, ("cancelled", e.args[0] if e.args else None))
                if term[-1] == "propagate":
                    raise
                continue
            except AppError as e:
                e.__traceback__ = None
                out = ("exc", e.code, e.msg)
            except TimeoutError as e:
                e.__traceback__ = None
                out = _py_exc_outcome(e)
            fut = None
            self.log("resume", T, aw, out)
        return None

    # running
    def _mark_running(self):
        # asyncio has no public run_once. afut_loop_run_once(loop, 0) is one call of
        # BaseEventLoop._run_once(), which 3.13 exposes for hosts that drive the loop
        # themselves (with _run_forever_setup / _run_forever_cleanup). The loop is marked
        # running (is_running(), the running loop) as the setup does, but the stop flag is
        # left alone, as afut_loop_run_once ignores stop (the cleanup would clear it).
        self.loop._thread_id = __import__("threading").get_ident()
        asyncio.events._set_running_loop(self.loop)

    def _unmark_running(self):
        self.loop._thread_id = None
        asyncio.events._set_running_loop(None)

    def p_run_once(self):
        DiffLoop.handles_run = 0
        self._mark_running()
        try:
            self.loop._run_once()
        finally:
            self._unmark_running()
        return DiffLoop.handles_run

    def _py_run_status(self, fut, e):
        if isinstance(e, RuntimeError):
            if "stopped before Future completed" in str(e):
                return "invalid_state"
            if "already running" in str(e) or "another loop is running" in str(e):
                return "loop_running"
            return "python:RuntimeError:" + str(e)
        if isinstance(e, asyncio.CancelledError):
            return "cancelled" if fut.cancelled() else "exception"
        if isinstance(e, WouldBlock):
            raise e
        return "exception"

    def p_ruc(self, fut):
        self.loop._selector.may_block = True
        self.ruc_active = fut
        try:
            self.loop.run_until_complete(fut)
            return "ok"
        except BaseException as e:
            e.__traceback__ = None
            return self._py_run_status(fut, e)
        finally:
            self.ruc_active = None
            self.loop._selector.may_block = False

    def p_nested_run(self, fut):
        try:
            self.loop.run_until_complete(fut)
            return "ok"
        except BaseException as e:
            e.__traceback__ = None
            return self._py_run_status(fut, e)

    def p_run_forever(self):
        self.loop._selector.may_block = True
        try:
            self.loop.run_forever()
            return "ok"
        except RuntimeError as e:
            return self._py_run_status(None, e)
        finally:
            self.loop._selector.may_block = False

    def p_close(self):
        self.loop.close()

    def p_free(self):
        self.release_frames()
        self.stuck_frames, self.cleared, self.seen_tb = {}, {}, {}
        AsyncioWorld.current = None
        asyncio.set_event_loop(None)
        self.loop = None
        self.cbfn = None
        gc.collect()


# --------------------------------------------------------------------------------------------
# afut

class _TaskState:
    __slots__ = ("pc", "waiting", "aw", "oncancel", "extra", "dummy")

    def __init__(self):
        self.pc = None          # index of the segment whose terminator the task waits on
        self.waiting = None     # "await" | "yield"
        self.aw = None          # the awaited slot
        self.oncancel = None
        self.extra = 0          # afut_cancel calls the mirror made to end its own task
        self.dummy = None


class AfutWorld(World):
    name = "afut"
    lib = None
    # ctypes trampolines: created once per process, dispatching to the current world
    current = None

    @classmethod
    def init_process(cls, path=None):
        if cls.lib is not None:
            return
        cls.lib = B.load(path)
        cls.DONE = B.DONE_FN(lambda f, ud: cls.current._t_done(f, ud))
        cls.HANDLE = B.CALLBACK_FN(lambda ud: cls.current._t_handle(ud))
        cls.TICK = B.CALLBACK_FN(lambda ud: cls.current._t_tick())
        cls.STEP = B.STEP_FN(lambda t, a, ud: cls.current._t_step(t, a, ud))
        cls.HANDLER = B.HANDLER_FN(lambda l, c, ud: cls.current._t_report(c))
        cls.DESCR = ctypes.create_string_buffer(256)

    def key(self, obj):
        return obj

    def setup(self):
        AfutWorld.current = self
        self.L = self.lib
        self.loop = self.L.afut_loop_new()
        if not self.loop:
            raise OSError("afut_loop_new failed")
        self.L.afut_loop_set_exception_handler(self.loop, self.HANDLER, None, B.NO_FREE)
        self.tstate = {}
        self.tstate_of = {}

    # trampolines: a Python exception must never unwind into C
    def _guard(self, fn, *args):
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001 - recorded, compared, never swallowed
            self.events.append(("harness_error", type(e).__name__, str(e)))

    def _t_done(self, f, ud):
        self._guard(self.on_done_cb, ud or 0, f)

    def _t_handle(self, ud):
        self._guard(self.on_handle, ud or 0)

    def _t_tick(self):
        self._guard(self.on_tick)

    def _t_report(self, c):
        def rep():
            ctx = c.contents
            msg = ctx.message.decode() if ctx.message else ""
            slot = self.slot_for(ctx.future) if ctx.future else None
            code = ctx.exception.contents.code if ctx.exception else None
            if msg.endswith("exception was never retrieved"):
                self.report(msg.split()[0].lower() + "_never_retrieved", slot, code)
            elif msg == "Task was destroyed but it is pending!":
                self.report("destroyed_pending", slot, None)
            else:
                self.report("other:" + msg.split(" ")[0], slot, code)
        self._guard(rep)

    def _t_step(self, t, a, ud):
        self._guard(self.task_step, t, a, ud or 0)

    # futures
    def p_new(self):
        return self.L.afut_loop_create_future(self.loop)

    def p_set_result(self, f, v):
        return B.STATUS_NAMES.get(self.L.afut_set_result(f, v or None, B.NO_FREE))

    def p_set_exception(self, f, code):
        return B.STATUS_NAMES.get(
            self.L.afut_set_exception(f, code, b"e%d" % code, None, B.NO_FREE))

    def p_cancel(self, f, msg):
        return bool(self.L.afut_cancel(f, None if msg is None else msg.encode()))

    def _cmsg(self, f):
        m = self.L.afut_cancel_message(f)
        return None if m is None else m.decode()

    def _read(self, f):
        """afut_result, then the details (afut_exception / afut_cancel_message)."""
        v = ctypes.c_void_p()
        rc = self.L.afut_result(f, ctypes.byref(v))
        if rc == B.AFUT_OK:
            return ("ok", v.value or 0)
        if rc == B.AFUT_ERR_EXCEPTION:
            e = B.AfutException()
            self.L.afut_exception(f, ctypes.byref(e))
            return ("exc", e.code, e.message.decode() if e.message else None)
        if rc == B.AFUT_ERR_CANCELLED:
            return ("cancelled", self._cmsg(f))
        if rc == B.AFUT_ERR_INVALID_STATE:
            return ("pending",)
        return ("status", rc)

    def render_ok(self, s, f, v):
        if s is not None and self.kind.get(s) == "gather":
            n = self.gather_n[s]
            return ("gather", tuple(self.peek_outcome(self.L.afut_gather_child(f, i))
                                    for i in range(n)))
        if v > 0xFFFF:
            return ("ok", "list")  # a gather's array seen through another future
        return ("ok", v)

    def p_result(self, s, f):
        out = self._read(f)
        if out[0] == "ok":
            return self.render_ok(s, f, out[1])
        return out

    def p_exception(self, s, f):
        e = B.AfutException()
        rc = self.L.afut_exception(f, ctypes.byref(e))
        if rc == B.AFUT_OK:
            if e.code == 0:
                return ("none",)
            return ("exc", e.code, e.message.decode() if e.message else None)
        if rc == B.AFUT_ERR_CANCELLED:
            return ("cancelled", self._cmsg(f))
        if rc == B.AFUT_ERR_INVALID_STATE:
            return ("pending",)
        return ("status", rc)

    def p_state(self, f):
        return (bool(self.L.afut_done(f)), bool(self.L.afut_cancelled(f)))

    def p_cancelling(self, f):
        return self.L.afut_task_cancelling(f)

    def p_uncancel(self, f):
        return self.L.afut_task_uncancel(f)

    def p_add_cb(self, f, cb):
        return B.STATUS_NAMES.get(self.L.afut_add_done_callback(f, self.DONE, cb, B.NO_FREE))

    def p_remove_cb(self, f, cb):
        return self.L.afut_remove_done_callback(f, self.DONE, cb)

    def p_release(self, f):
        self.L.afut_unref(f)

    def describe(self, f):
        n = self.L.afut_describe(f, self.DESCR, 256)
        return self.DESCR.value.decode(errors="replace") if n else ""

    def peek_outcome(self, f):
        d = self.describe(f)
        if " pending" in d or " cancelling" in d:
            return ("pending",)
        if " cancelled" in d:
            return ("cancelled", self._cmsg(f))
        if "result=" in d:
            r = d.split("result=", 1)[1].rstrip(">")
            v = 0 if r == "NULL" else int(r, 16)
            return ("ok", "list") if v > 0xFFFF else ("ok", v)
        if "exception=code " in d:
            rest = d.split("exception=code ", 1)[1][:-1]
            if ": " in rest:
                code, msg = rest.split(": ", 1)
            else:
                code, msg = rest, None
            return ("exc", int(code), msg)
        return ("describe", d)

    def p_peek(self, s, f):
        d = self.describe(f)
        if " pending" in d or " cancelling" in d:
            state = "pending"
        elif " cancelled" in d:
            state = "cancelled"
        else:
            state = "finished"
        ncb = 0
        if "cb=[" in d:
            ncb = int(d.split("cb=[", 1)[1].split("]", 1)[0])
        if self.kind.get(s) == "gather" and state == "finished" and "result=" in d:
            out = ("gather", tuple(self.peek_outcome(self.L.afut_gather_child(f, i))
                                   for i in range(self.gather_n[s])))
        else:
            out = self.peek_outcome(f)
        return (state, out, ncb)

    # handles
    def p_call_soon(self, hid):
        return self.L.afut_loop_call_soon(self.loop, self.HANDLE, hid, B.NO_FREE)

    def p_call_later(self, hid, delay):
        return self.L.afut_loop_call_later(self.loop, delay, self.HANDLE, hid, B.NO_FREE)

    def p_call_at(self, hid, offset):
        when = self.L.afut_loop_time(self.loop) + offset
        return self.L.afut_loop_call_at(self.loop, when, self.HANDLE, hid, B.NO_FREE)

    def p_cancel_handle(self, hid):
        return bool(self.L.afut_loop_cancel(self.loop, self.handles[hid]))

    def p_stop(self):
        self.L.afut_loop_stop(self.loop)

    def p_schedule_tick(self):
        return self.L.afut_loop_call_soon(self.loop, self.TICK, None, B.NO_FREE)

    def p_cancel_tick(self, h):
        self.L.afut_loop_cancel(self.loop, h)

    # combinators
    def p_gather(self, objs, rexc):
        arr = (ctypes.c_void_p * len(objs))(*objs)
        return self.L.afut_gather(self.loop, arr, len(objs), rexc)

    def p_shield(self, inner):
        return self.L.afut_shield(self.loop, inner)

    def p_wait_for(self, s, inner, timeout):
        return self.L.afut_wait_for(self.loop, inner, timeout)

    def mirror_extra(self, s):
        # by object: shield(done task) gives the task itself under another slot
        st = self.tstate_of.get(self.slots.get(s))
        return st.extra if st is not None else 0

    # tasks: the step function mirrors AsyncioWorld._coro
    def p_task(self, s, tid):
        st = self.tstate[s] = _TaskState()
        t = self.L.afut_task_new(self.loop, self.STEP, s, B.NO_FREE)
        self.tstate_of[t] = st
        return t

    def _cancel_requested(self, t):
        m = ctypes.c_char_p()
        if self.L.afut_task_cancel_requested(t, ctypes.byref(m)):
            return True, (m.value.decode() if m.value is not None else None)
        return False, None

    def _take_cancel(self, t):
        m = ctypes.c_char_p()
        self.L.afut_task_take_cancel(t, ctypes.byref(m))

    def task_step(self, t, awaited, T):
        st = self.tstate[T]
        if st.pc is None:
            st.pc = 0
            if self._cancel_requested(t)[0]:
                return  # a coroutine cancelled before it started never runs
            self._run_segments(t, T, st, awaited)
            return
        pending, pmsg = self._cancel_requested(t)
        cancelled_msg = None
        is_cancel = False
        from_awaited = False
        if st.waiting == "await" and awaited and awaited != st.dummy:
            out = self._read(awaited)
            if out[0] == "cancelled" or (out[0] == "exc" and out[1] == B.AFUT_ERR_CANCELLED):
                is_cancel, cancelled_msg, from_awaited = True, out[-1], True
            elif pending:
                is_cancel, cancelled_msg = True, pmsg
            elif out[0] == "ok":
                out = self.render_ok(None, awaited, out[1])
        else:
            st.aw = None
            out = ("yield",)
            if pending:
                is_cancel, cancelled_msg = True, pmsg
        st.dummy = None
        if is_cancel:
            self.log("resume", T, st.aw, ("cancelled", cancelled_msg))
            if st.oncancel == "propagate":
                if from_awaited:
                    if pending:
                        self._take_cancel(t)
                    if not self.L.afut_cancelled(awaited):
                        # a CancelledError stored as an exception (a gather's): end the
                        # task cancelled with its message
                        self._end_cancelled(t, st, cancelled_msg)
                # else: the pending request ends the task when the step returns
                return
            if pending:
                self._take_cancel(t)
        else:
            self.log("resume", T, st.aw, out)
        st.pc += 1
        self._run_segments(t, T, st, awaited)

    def _end_cancelled(self, t, st, msg):
        self.L.afut_cancel(t, None if msg is None else msg.encode())
        st.extra += 1

    def _run_segments(self, t, T, st, awaited):
        segs = self.sc["tasks"][self.tid_of(T)]
        while st.pc < len(segs):
            seg = segs[st.pc]
            self.stepping = T
            try:
                self.run_actions(seg["actions"])
            finally:
                self.stepping = None
            term = seg["term"]
            kind = term[0]
            if kind == "return":
                self.L.afut_set_result(t, term[1] or None, B.NO_FREE)
                return  # refused while a cancel is pending: the task then ends cancelled
            if kind == "raise":
                if self._cancel_requested(t)[0]:
                    self._take_cancel(t)  # asyncio: an exception wins over _must_cancel
                code = term[1]
                self.L.afut_set_exception(t, code, b"e%d" % code, None, B.NO_FREE)
                return
            fut = self.get(term[1]) if kind == "await" else None
            if kind == "await" and (fut is None or fut == self.get(T)):
                kind = "yield"
            st.oncancel = term[-1]
            if kind == "await":
                if self.L.afut_done(fut):
                    # `await` on a done future does not suspend the coroutine
                    out = self._read(fut)
                    if out[0] == "cancelled" or (out[0] == "exc"
                                                 and out[1] == B.AFUT_ERR_CANCELLED):
                        self.log("resume", T, term[1], ("cancelled", out[-1]))
                        if st.oncancel == "propagate":
                            self._end_cancelled(t, st, out[-1])
                            return
                    else:
                        if out[0] == "ok":
                            out = self.render_ok(None, fut, out[1])
                        self.log("resume", T, term[1], out)
                    st.pc += 1
                    continue
                st.waiting = "await"
                st.aw = term[1]
                rc = self.L.afut_task_await(t, fut)
                if rc != B.AFUT_OK:
                    self.log("harness_error", "afut_task_await", rc)
                return
            # yield
            st.waiting = "yield"
            st.aw = None
            if (awaited and self.L.afut_cancelled(awaited)) or self._cancel_requested(t)[0]:
                # Returning doing neither would end the task now; asyncio throws the
                # CancelledError into the coroutine at its next step instead (or lets it
                # yield after a swallowed one). Awaiting a done future takes exactly the
                # same single iteration.
                d = self.L.afut_loop_create_future(self.loop)
                self.L.afut_set_result(d, None, B.NO_FREE)
                st.dummy = d
                self.L.afut_task_await(t, d)
                self.L.afut_unref(d)
            return
        # the script ran out: `return None`
        self.L.afut_set_result(t, None, B.NO_FREE)

    def tid_of(self, T):
        return self.task_tid[T]

    # running
    def p_run_once(self):
        n = ctypes.c_size_t()
        rc = self.L.afut_loop_run_once(self.loop, 0, ctypes.byref(n))
        return n.value if rc == B.AFUT_OK else B.STATUS_NAMES.get(rc, rc)

    def _run_status(self, rc):
        return {B.AFUT_OK: "ok", B.AFUT_ERR_EXCEPTION: "exception",
                B.AFUT_ERR_CANCELLED: "cancelled", B.AFUT_ERR_INVALID_STATE: "invalid_state",
                B.AFUT_ERR_LOOP_RUNNING: "loop_running"}.get(rc, B.STATUS_NAMES.get(rc, rc))

    def p_ruc(self, fut):
        return self._run_status(self.L.afut_loop_run_until_complete(self.loop, fut))

    def p_nested_run(self, fut):
        return self._run_status(self.L.afut_loop_run_until_complete(self.loop, fut))

    def p_run_forever(self):
        return self._run_status(self.L.afut_loop_run_forever(self.loop))

    def p_close(self):
        self.L.afut_loop_close(self.loop)

    def p_free(self):
        self.L.afut_loop_free(self.loop)
        self.loop = None
        AfutWorld.current = None
