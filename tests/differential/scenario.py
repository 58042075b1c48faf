"""Random scenarios for the differential test, and their printed form.

A scenario is a JSON-able dict:

    {"seed": int,
     "ops":     [op, ...],                 # the top-level program
     "scripts": [[action, ...], ...],      # callback id -> what the callback does
     "tasks":   [[segment, ...], ...]}     # task script id -> the coroutine's body

ops and actions (actions are the ops a callback or a task step may run):
    ["new", s]                      s = loop.create_future()
    ["gather", s, [i, ...], rexc]   s = gather(*slots, return_exceptions=rexc)
    ["shield", s, i]                s = shield(slot i)
    ["wait_for", s, i, timeout]     s = wait_for(slot i, timeout)   (inf: None)
    ["task", s, tid]                s = create_task(<task script tid>)
    ["set_result", s, v] ["set_exception", s, code] ["cancel", s, msg]
    ["result", s] ["exception", s] ["state", s] ["cancelling", s] ["uncancel", s]
    ["add_cb", s, cb] ["remove_cb", s, cb] ["unref", s]
    ["call_soon", h, cb] ["call_later", h, delay, cb] ["call_at", h, offset, cb]
    ["cancel_handle", h] ["stop"]
    top level only: ["run_once"] ["ruc", s, k] ["run_forever", k]
    actions only:   ["nested_run", s]   (run_until_complete from inside the loop)
A task segment is {"actions": [...], "term": t} with t one of
    ["await", s, oncancel] ["yield", oncancel] ["return", v] ["raise", code]
and oncancel "propagate" (let CancelledError out) or "swallow" (catch it, go on).

Dependencies always point to lower slot numbers (a gather's inputs, a shield's or wait_for's
inner, what a task awaits), so no await cycle can be built (asyncio raises RecursionError
when such a cycle is cancelled; afut's behaviour there is issue 10's separate finding).
Time offsets are 0 or 10 s apart (see engine.DiffLoop).
"""

import json
import math
import os
import random

# AFUT_DIFF_WITHOUT=gather,shield,...: scenarios without those (for narrowing down).
WITHOUT = set(filter(None, os.environ.get("AFUT_DIFF_WITHOUT", "").split(",")))

MSGS = [None, "m1", "m2"]
DELAYS = [0.0, -0.0, -10.0, -20.0, 1e4, math.inf]
OFFSETS = [0.0, -10.0, -30.0, 1e4, math.inf]
# timeouts <= 0 trigger the wait_for-timing rule; kept, but less often than the others
TIMEOUTS = [math.inf, math.inf, math.inf, 1e4, 1e4, 0.0, -1.0]


def _w(r, table):
    total = sum(w for _, w in table)
    x = r.random() * total
    for item, w in table:
        x -= w
        if x < 0:
            return item
    return table[-1][0]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.seed = seed
        self.nslot = 0
        self.nhandle = 0
        self.scripts = []
        self.tasks = []
        r = self.r
        # per-scenario profile: how much of each feature
        self.p_task = r.choice([0.0, 0.5, 1.5, 3.0])
        self.p_comb = r.choice([0.0, 0.7, 1.5, 3.0])
        self.p_handle = r.choice([0.5, 1.5, 3.0])
        self.p_unref = r.choice([0.3, 1.0, 2.5])
        self.max_slots = r.randint(3, 10)
        self.kinds = {}

    # ----- helpers -----
    def slot(self, below=None):
        hi = self.nslot if below is None else min(below, self.nslot)
        if hi <= 0:
            return None
        r = self.r
        if r.random() < 0.6:
            return hi - 1 - min(int(r.expovariate(0.6)), hi - 1)
        return r.randrange(hi)

    def new_slot(self):
        s = self.nslot
        self.nslot += 1
        return s

    def cb(self, depth):
        r = self.r
        if self.scripts and r.random() < 0.4:
            return r.randrange(len(self.scripts))
        c = len(self.scripts)
        self.scripts.append(None)
        self.scripts[c] = self.actions(depth + 1, r.randint(0, 4))
        return c

    def value(self):
        return self.r.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 0])

    # ----- ops -----
    def creation(self, depth):
        r = self.r
        kind = _w(r, [(k, w) for k, w in
                      [("new", 4), ("gather", self.p_comb), ("shield", self.p_comb * 0.7),
                       ("wait_for", self.p_comb * 0.5), ("task", self.p_task)]
                      if k not in WITHOUT])
        if kind != "new" and self.nslot == 0:
            kind = "new"
        s = self.new_slot()
        self.kinds[s] = kind
        if kind == "new":
            return ["new", s]
        if kind == "gather":
            n = 0 if r.random() < 0.04 else r.randint(1, 4)
            ins = [self.slot(s) for _ in range(n)]
            if n > 1 and r.random() < 0.15:
                ins[-1] = ins[0]
            return ["gather", s, ins, r.random() < 0.5]
        if kind == "shield":
            return ["shield", s, self.slot(s)]
        if kind == "wait_for":
            return ["wait_for", s, self.slot(s), r.choice(TIMEOUTS)]
        return ["task", s, self.task_script(s, depth)]

    def task_script(self, T, depth):
        r = self.r
        segs = []
        for i in range(r.randint(1, 4)):
            acts = self.actions(depth + 1, r.choice([0, 0, 1, 2])) if depth < 2 else []
            oncancel = "propagate" if r.random() < 0.6 else "swallow"
            t = _w(r, [("await", 5), ("yield", 2.5), ("return", 1.2), ("raise", 0.8)])
            if t == "await" and T == 0:
                t = "yield"
            if t == "await":
                term = ["await", self.slot(T), oncancel]
            elif t == "yield":
                term = ["yield", oncancel]
            elif t == "return":
                term = ["return", self.value()]
            else:
                term = ["raise", r.randint(1, 5)]
            segs.append({"actions": acts, "term": term})
            if t in ("return", "raise"):
                break
        tid = len(self.tasks)
        self.tasks.append(segs)
        return tid

    def action(self, depth, top):
        r = self.r
        table = [
            ("create", 2.5 if top else 0.6), ("set_result", 3), ("set_exception", 2),
            ("cancel", 2.5), ("result", 1.5), ("exception", 1), ("state", 1),
            ("cancelling", 0.3 * (1 + self.p_task)), ("uncancel", 0.15 * (1 + self.p_task)),
            ("add_cb", 4 if depth < 3 else 0.5), ("remove_cb", 1), ("unref", self.p_unref),
            ("call_soon", self.p_handle if depth < 3 else 0.2),
            ("call_later", self.p_handle * 0.6 if depth < 3 else 0.1),
            ("call_at", self.p_handle * 0.4 if depth < 3 else 0.1),
            ("cancel_handle", self.p_handle * 0.6), ("stop", 0.25 if top else 0.4),
        ]
        if top:
            table += [("run_once", 4), ("ruc", 1.2), ("run_forever", 0.7)]
        else:
            table += [("nested_run", 0.1)]
        k = _w(r, table)
        if k == "create" and self.nslot >= self.max_slots:
            k = "state"
        if k == "create" or (self.nslot == 0 and k not in
                             ("call_soon", "call_later", "call_at", "cancel_handle", "stop",
                              "run_once", "run_forever")):
            return self.creation(depth)
        if k in ("call_soon", "call_later", "call_at"):
            h = self.nhandle
            self.nhandle += 1
            c = self.cb(depth)
            if k == "call_soon":
                return ["call_soon", h, c]
            if k == "call_later":
                return ["call_later", h, r.choice(DELAYS), c]
            return ["call_at", h, r.choice(OFFSETS), c]
        if k == "cancel_handle":
            if self.nhandle == 0:
                return ["stop"] if r.random() < 0.1 else self.creation(depth)
            return ["cancel_handle", r.randrange(self.nhandle)]
        if k == "stop":
            return ["stop"]
        if k == "run_once":
            return ["run_once"]
        if k == "run_forever":
            return ["run_forever", r.randint(1, 6)]
        s = self.slot()
        # Completing a wait_for (wait_for-completed-by-caller) and cancelling a gather
        # (gh-85071) end the comparison of a scenario early: aimed at less often.
        if k in ("set_result", "set_exception") and self.kinds.get(s) == "wait_for" \
                and r.random() < 0.8:
            s = self.slot()
        if k == "cancel" and self.kinds.get(s) == "gather" and r.random() < 0.5:
            s = self.slot()
        if k == "ruc":
            return ["ruc", s, r.randint(1, 6)]
        if k == "nested_run":
            return ["nested_run", s]
        if k == "set_result":
            return ["set_result", s, self.value()]
        if k == "set_exception":
            return ["set_exception", s, r.randint(1, 5)]
        if k == "cancel":
            return ["cancel", s, r.choice(MSGS)]
        if k in ("add_cb", "remove_cb"):
            if k == "remove_cb" and self.scripts and r.random() < 0.8:
                return ["remove_cb", s, r.randrange(len(self.scripts))]
            return [k, s, self.cb(depth)]
        return [k, s]

    def actions(self, depth, n):
        return [self.action(depth, False) for _ in range(n)]

    def scenario(self):
        r = self.r
        ops = []
        n = r.randint(6, 34)
        for i in range(n):
            if i < 2 or (self.nslot < self.max_slots and r.random() < 0.18):
                ops.append(self.creation(0))
            else:
                ops.append(self.action(0, True))
        for _ in range(r.randint(1, 4)):
            ops.append(["run_once"])
        return {"seed": self.seed, "ops": ops, "scripts": self.scripts, "tasks": self.tasks}


def generate(seed):
    return Gen(seed).scenario()


def to_json(sc):
    return json.dumps(sc, separators=(",", ":"))


def from_json(s):
    sc = json.loads(s)
    return sc


# --------------------------------------------------------------------------------------------
# printing

def _fmt_num(x):
    if isinstance(x, float):
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x == 0 and math.copysign(1, x) < 0:
            return "-0.0"
    return repr(x)


def fmt_op(op):
    k = op[0]
    S = lambda s: f"F{s}"  # noqa: E731
    if k == "new":
        return f"{S(op[1])} = loop.create_future()"
    if k == "gather":
        return f"{S(op[1])} = gather({', '.join(S(i) for i in op[2])}" \
               f"{', return_exceptions=True' if op[3] else ''})"
    if k == "shield":
        return f"{S(op[1])} = shield({S(op[2])})"
    if k == "wait_for":
        return f"{S(op[1])} = wait_for({S(op[2])}, {_fmt_num(op[3])})"
    if k == "task":
        return f"{S(op[1])} = create_task(task{op[2]}())"
    if k == "set_result":
        return f"{S(op[1])}.set_result({op[2]})"
    if k == "set_exception":
        return f"{S(op[1])}.set_exception(E{op[2]})"
    if k == "cancel":
        return f"{S(op[1])}.cancel({op[2]!r})" if op[2] is not None else f"{S(op[1])}.cancel()"
    if k in ("result", "exception", "cancelling", "uncancel"):
        return f"{S(op[1])}.{k}()"
    if k == "state":
        return f"{S(op[1])}.done(), .cancelled()"
    if k in ("add_cb", "remove_cb"):
        name = "add_done_callback" if k == "add_cb" else "remove_done_callback"
        return f"{S(op[1])}.{name}(cb{op[2]})"
    if k == "unref":
        return f"del {S(op[1])}"
    if k == "call_soon":
        return f"H{op[1]} = loop.call_soon(cb{op[2]})"
    if k == "call_later":
        return f"H{op[1]} = loop.call_later({_fmt_num(op[2])}, cb{op[3]})"
    if k == "call_at":
        return f"H{op[1]} = loop.call_at(loop.time() + {_fmt_num(op[2])}, cb{op[3]})"
    if k == "cancel_handle":
        return f"H{op[1]}.cancel()"
    if k == "stop":
        return "loop.stop()"
    if k == "run_once":
        return "loop.run_once()"
    if k == "ruc":
        return f"loop.run_until_complete({S(op[1])})   # ticker stops after {op[2]} iterations"
    if k == "run_forever":
        return f"loop.run_forever()   # ticker stops after {op[1]} iterations"
    if k == "nested_run":
        return f"loop.run_until_complete({S(op[1])})   # nested"
    return repr(op)


def used_scripts(sc):
    """Callback ids and task ids reachable from the top-level program."""
    cbs, tids = set(), set()
    todo = list(sc["ops"])
    while todo:
        op = todo.pop()
        k = op[0]
        if k in ("add_cb", "call_soon", "call_later", "call_at"):
            c = op[-1]
            if c not in cbs:
                cbs.add(c)
                todo.extend(sc["scripts"][c])
        elif k == "remove_cb":
            cbs.add(op[-1])
        elif k == "task":
            t = op[2]
            if t not in tids:
                tids.add(t)
                for seg in sc["tasks"][t]:
                    todo.extend(seg["actions"])
    return cbs, tids


def fmt_scenario(sc):
    lines = []
    cbs, tids = used_scripts(sc)
    for c in sorted(cbs):
        body = sc["scripts"][c]
        lines.append(f"def cb{c}(...):" + ("" if body else " pass"))
        for a in body:
            lines.append(f"    {fmt_op(a)}")
    for t in sorted(tids):
        lines.append(f"async def task{t}():")
        for seg in sc["tasks"][t]:
            for a in seg["actions"]:
                lines.append(f"    {fmt_op(a)}")
            term = seg["term"]
            if term[0] == "await":
                lines.append(f"    await F{term[1]}   # CancelledError: {term[2]}")
            elif term[0] == "yield":
                lines.append(f"    await sleep(0)   # CancelledError: {term[1]}")
            elif term[0] == "return":
                lines.append(f"    return {term[1]}")
            else:
                lines.append(f"    raise E{term[1]}")
    lines.append("# program")
    for op in sc["ops"]:
        lines.append(fmt_op(op))
    return "\n".join(lines)
