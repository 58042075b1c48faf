#!/usr/bin/env python3
"""Differential test: afut against CPython 3.13's asyncio, scenario by scenario.

README
======
Run:  scripts/differential.sh [N]          (N random scenarios, default 20000)
      AFUT_DIFF_SEED=<seed> scripts/differential.sh       replays that one scenario, verbose
      AFUT_DIFF_SEED=<seed> scripts/differential.sh N     replays a whole run (seeds seed..seed+N-1)
      python3 differential.py --replay-json FILE          replays a saved (minimized) scenario
      python3 differential.py --rules                     prints every sanctioned-difference rule
Environment: AFUT_LIB (the library), AFUT_DIFF_JOBS (worker processes, default: CPUs),
AFUT_DIFF_DUMP=FILE (every divergence as a JSON line), AFUT_DIFF_WITHOUT=gather,shield,
wait_for,task (scenarios without those, to narrow a divergence down).
repro/: one small reproducer per divergence this test found (exit 1 while it diverges).

What it does. Each scenario is a random program (scenario.py) over futures, done-callbacks,
handles, the run functions, gather, shield, wait_for and tasks. It is executed twice, in one
worker process: in asyncio (the real stdlib loop, futures, tasks and combinators; engine.py
AsyncioWorld) and in afut through ctypes (engine.py AfutWorld, tests/differential/binding.py).
The callbacks of both are the same scripts: they complete, cancel and read other futures,
add and remove callbacks, drop references, schedule and cancel handles, stop the loop, try a
nested run, create futures, combinators and tasks. A task's step function in afut mirrors the
Python coroutine of the same script (await a slot, yield, return, raise; a CancelledError is
let out or swallowed). Each world writes an event log and compare.py compares them event by
event.

What is compared, event by event:
  - callback order: every done-callback ("cb", id, future), handle callback ("h", handle,
    id) and task resumption ("resume", task, awaited, outcome) in the order they ran;
  - iteration boundaries: each run_once is one afut_loop_run_once(loop, 0) against one call
    of asyncio's BaseEventLoop._run_once(), with the number of callbacks it ran; inside
    run_forever / run_until_complete a ticker callback re-scheduling itself marks every
    iteration (it also stops the run after k iterations, so that no run ever blocks);
  - return values: set_result / set_exception status, cancel() true/false, Handle cancel
    (afut's bool against "had not started and was not cancelled"), remove_done_callback
    counts, result() / exception() outcomes (value, exception code and message, cancel
    message, pending), done()/cancelled(), cancelling()/uncancel(), the status of
    run_until_complete / run_forever / a nested run;
  - final states: at the end, every slot still held: state, outcome (read without
    retrieving it) and number of registered callbacks;
  - "never retrieved" reports: asyncio's exception handler against afut's
    (afut_loop_set_exception_handler), each with its future and exception code, where it
    happens: Python's garbage collector runs before every event (gc.collect(), the rest of
    the heap frozen), so a future is finalized when it becomes garbage, as afut frees it on
    its last afut_unref; also "Task was destroyed but it is pending!". (The locals of
    returned frames that exceptions still reach are dropped first: a Python traceback keeps
    the whole stack of the moment alive, run_until_complete's `future` included; a C error
    keeps nothing. See engine.AsyncioWorld.release_frames.)

Sanctioned differences: each is a rule in compare.py (RULES holds its full text, printed
by `differential.py --rules`), applied only where its precondition holds, counted and printed
at the end of a run. Local rules (the comparison goes on):
  task-cancel-message        a task's cancel message is stable in afut, asyncio loses it
                             after the first retrieval (afut.h afut_task_new)
  wait_for-is-a-future       afut_wait_for is a future, asyncio's wait_for a task: report
                             kind, "Task was destroyed" reports, cancelling()/uncancel()
  mirror-cancel-count        the C step ends its task cancelled with afut_cancel (one more
                             cancel request than asyncio's coroutine needs)
  gc-cycle-until-close       a dropped pending gather/shield/wait_for/wait and its dropped
                             inputs: asyncio's cycle collector reports them when it frees
                             them, afut when the loop closes (README)
  report-order               reports of one release compared as a multiset (gc order)
  teardown-reports           reports after loop.close() compared as a multiset
  gh-91887-task-lifetime     afut keeps pending tasks alive until the loop closes
  gh-85071-gather-cancel     (local for the cancelled gather itself, truncating otherwise)
                             a cancelled gather ends CANCELLED at once in afut
Truncating rules (a documented difference of timing or of kind was triggered; the scenario
is compared up to the first divergence after that point, and counted as ended early):
  asyncio-shield-callback-error  asyncio's shield raises InvalidStateError in its own
                             callback when the caller completed the outer; afut has no error
                             (afut.h afut_shield); its traceback changes asyncio's lifetimes
  wait_for-timing            timeout <= 0 on a pending inner, or the wait_for cancelled
  wait_for-completed-by-caller  afut's wait_for is a future its caller may complete
  stale-run_until_complete-stopper  asyncio's stale stop callback ends a later run early,
                             afut makes it inert (issue 10)
Representations, not differences: an afut exception is AppError(code) with message
"e<code>"; asyncio's CancelledError stored as an exception is code -2 (AFUT_ERR_CANCELLED),
its TimeoutError code -8 with afut's message "timed out"; a gather's result is compared child
by child (afut_gather_child); an empty gather's [] is afut's NULL; asyncio's report names the
future's class (_GatheringFuture), afut's says Future or Task: the kind is compared; Task's
set_result / set_exception raise RuntimeError where afut returns AFUT_ERR_INVALID_STATE
(afut.h afut_task_new: "as asyncio's Task.set_result raises"): both are "invalid_state".

What the harness arranges so that the two runs can be compared at all (engine.py):
  - run_once: asyncio has no public one; one afut_loop_run_once(loop, 0) is one call of
    BaseEventLoop._run_once() (3.13 exposes it for hosts that drive the loop), with the loop
    marked running as _run_forever_setup does, and the stop flag left alone, as
    afut_loop_run_once ignores stop (afut.h afut_loop_stop): a stop() then ends the next run
    after one iteration in both.
  - asyncio's clock is virtual and strictly increasing (1 us per reading), timer offsets are
    0 or 10 s apart, and a timer is either due at once (delay <= 0, a past call_at) or never
    (1e4 s, inf): deadlines order the same way on afut's real clock, and asyncio's undefined
    order of equal deadlines never arises.
  - asyncio's wait_for runs in a task that behaves like afut's wait_for future: started
    eagerly (eager_start) when the inner is pending, so that it registers on the inner at
    creation; started normally when the inner is done, so that its first step is queued at
    creation like afut's callback (see the wait_for-timing rule for what remains).
  - The task mirror (engine.py AfutWorld.task_step) is what a binding does to give a C step
    asyncio's coroutine semantics: `await` on a done future goes on in the same step; a
    pending cancel is delivered at the next step as a CancelledError the script lets out or
    swallows (afut_task_cancel_requested / afut_task_take_cancel); a raise takes a pending
    cancel first (asyncio's exception wins over _must_cancel); a CancelledError stored as an
    exception (a gather's) counts as one; a yield after a cancellation waits one iteration on
    a done future instead of returning doing neither (which would end the task at once).
  - Scenarios never build an await cycle (dependencies point to lower slots); a script never
    completes its own task through set_result (the task's terminator does).

  - Scenarios aim less often at what ends a comparison early (completing a wait_for,
    cancelling a gather, a timeout <= 0): the rules still fire, and are counted.

Crashes and hangs: scenarios run in worker processes (one per CPU) with MALLOC_PERTURB_ set
(freed memory is overwritten, so a use-after-free reads garbage); a worker that dies or does
not answer within 30 s is a failed scenario ("crash", "hang"), and a new worker goes on.

Exit status: non-zero if any scenario diverged without a rule, crashed or hung. The first
few divergences are printed minimized (greedy removal of ops and actions while the kind of
divergence stays), with their seeds.
"""

import gc
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compare  # noqa: E402
import scenario  # noqa: E402

SCENARIO_TIMEOUT_S = 30.0
SHOW = 5                 # divergences printed (minimized)
MINIMIZE_BUDGET_S = 40.0


# --------------------------------------------------------------------------------------------
# worker: runs scenarios in-process, one JSON line per result

def run_pair(sc):
    import engine
    out = {"seed": sc.get("seed")}
    try:
        a = engine.AsyncioWorld(sc).run_scenario()
    except engine.WouldBlock:
        out.update(ok=False, what="harness: asyncio would block", a=None, b=None)
        return out, None, None
    b = engine.AfutWorld(sc).run_scenario()
    res = compare.compare(sc, a, b)
    out.update(ok=res.ok, truncated=res.truncated, hits=dict(res.hits), what=res.what,
               compared=dict(res.compared),
               a=repr(res.a_ev), b=repr(res.b_ev), ctx=[repr(e) for e in res.context],
               sig=repr(res.signature()) if not res.ok else None)
    return out, a, b


def worker():
    import engine
    # a task dropped before its first step: asyncio warns that its coroutine never ran
    warnings.simplefilter("ignore", RuntimeWarning)
    gc.disable()
    engine.AfutWorld.init_process()
    gc.collect()
    gc.freeze()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if line.startswith("seed "):
            sc = scenario.generate(int(line.split()[1]))
        else:
            sc = scenario.from_json(line)
        try:
            out, _, _ = run_pair(sc)
        except Exception as e:  # a harness bug: reported as a failure, never hidden
            out = {"seed": sc.get("seed"), "ok": False, "what": "harness error",
                   "a": repr(e), "b": traceback.format_exc().splitlines()[-3:], "sig": "harness"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


class Worker:
    def __init__(self):
        env = dict(os.environ)
        # freed memory is overwritten: a use-after-free in the library reads garbage
        env.setdefault("MALLOC_PERTURB_", "165")
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, env=env, text=True, bufsize=1)
        self.inflight = None
        self.sent_at = None
        self.buf = ""

    def send(self, req):
        self.inflight = req
        self.sent_at = time.monotonic()
        self.p.stdin.write(req + "\n")
        self.p.stdin.flush()

    def kill(self):
        try:
            self.p.kill()
        except OSError:
            pass
        self.p.wait()

    def died(self):
        rc = self.p.wait()
        err = ""
        try:
            self.err.seek(0)
            err = self.err.read()[-2000:]
        except (OSError, ValueError):
            pass
        return rc, err


def evaluate(req, worker=None):
    """One request on a (possibly new) worker; returns (result, worker)."""
    w = worker or Worker()
    try:
        w.send(req)
    except BrokenPipeError:
        rc, err = w.died()
        return {"ok": False, "what": f"crash (exit {rc})", "a": err, "sig": "crash"}, None
    r, _, _ = select.select([w.p.stdout], [], [], SCENARIO_TIMEOUT_S)
    if not r:
        w.kill()
        return {"ok": False, "what": "hang", "sig": "hang"}, None
    line = w.p.stdout.readline()
    if not line:
        rc, err = w.died()
        return {"ok": False, "what": f"crash (exit {rc})", "a": err.strip()[-600:],
                "sig": "crash"}, None
    return json.loads(line), w


# --------------------------------------------------------------------------------------------
# minimization: greedy removal while the divergence keeps its signature

def candidates(sc):
    ops = sc["ops"]
    n = len(ops)
    chunk = max(1, n // 2)
    while chunk >= 1:
        for i in range(0, n, chunk):
            c = json.loads(json.dumps(sc))
            del c["ops"][i:i + chunk]
            yield c
        chunk //= 2
    for ci, body in enumerate(sc["scripts"]):
        for i in range(len(body)):
            c = json.loads(json.dumps(sc))
            del c["scripts"][ci][i]
            yield c
    for ti, segs in enumerate(sc["tasks"]):
        for si, seg in enumerate(segs):
            if si > 0 and si == len(segs) - 1:
                c = json.loads(json.dumps(sc))
                del c["tasks"][ti][si]
                yield c
            for i in range(len(seg["actions"])):
                c = json.loads(json.dumps(sc))
                del c["tasks"][ti][si]["actions"][i]
                yield c
    for i, op in enumerate(ops):
        if op[0] in ("ruc", "run_forever") and op[-1] > 1:
            c = json.loads(json.dumps(sc))
            c["ops"][i][-1] = 1
            yield c


def minimize(sc, sig, deadline):
    """Returns (the smallest scenario found that fails with the same signature, its result)."""
    w = None
    best = sc
    best_r = None
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        for c in candidates(best):
            if time.monotonic() > deadline:
                break
            r, w = evaluate(scenario.to_json(c), w)
            if not r.get("ok") and r.get("sig") == sig:
                best, best_r = c, r
                improved = True
                break
    if w is not None:
        w.kill()
    return best, best_r


# --------------------------------------------------------------------------------------------
# driver

def print_divergence(r, sc, minimal, out, minimal_r=None):
    print(f"DIVERGENCE seed={r.get('seed')}: {r.get('what')}", file=out)
    if minimal_r is not None:
        # the minimized scenario's own divergence (same kind, its own slots)
        r = dict(minimal_r, seed=r.get("seed"))
    if r.get("ctx"):
        print("  context (asyncio log, last events):", file=out)
        for e in r["ctx"][-6:]:
            print(f"      {e}", file=out)
    print(f"  asyncio: {r.get('a')}", file=out)
    print(f"  afut:    {r.get('b')}", file=out)
    if minimal is not None:
        print("  minimized scenario:", file=out)
        for line in scenario.fmt_scenario(minimal).splitlines():
            print("      " + line, file=out)
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                            f"afut-diff-{r.get('seed')}.json")
        with open(path, "w") as f:
            f.write(scenario.to_json(minimal))
        print(f"  replay: python3 {os.path.relpath(__file__)} --replay-json {path}"
              f"   (original: AFUT_DIFF_SEED={r.get('seed')})", file=out)


def drive(n, base, nworkers):
    print(f"differential: {n} scenarios, seed {base} (replay one: AFUT_DIFF_SEED=<seed>; "
          f"this run: AFUT_DIFF_SEED={base} scripts/differential.sh {n})", flush=True)
    t0 = time.monotonic()
    seeds = list(range(base, base + n))
    next_i = 0
    workers = [Worker() for _ in range(nworkers)]
    results = []
    hits = Counter()
    truncated = Counter()
    compared = Counter()
    while workers:
        for w in list(workers):
            if w.inflight is None:
                if next_i >= n:
                    w.kill()
                    workers.remove(w)
                    continue
                w.send(f"seed {seeds[next_i]}")
                next_i += 1
        if not workers:
            break
        ready, _, _ = select.select([w.p.stdout for w in workers], [], [], 1.0)
        now = time.monotonic()
        for w in list(workers):
            seed = int(w.inflight.split()[1]) if w.inflight else None
            if w.p.stdout in ready:
                line = w.p.stdout.readline()
                if line:
                    r = json.loads(line)
                    w.inflight = None
                    results.append(r)
                    hits.update(r.get("hits") or {})
                    compared.update(r.get("compared") or {})
                    if r.get("truncated"):
                        truncated[r["truncated"]] += 1
                    continue
                rc, err = w.died()
                results.append({"seed": seed, "ok": False, "what": f"crash (exit {rc})",
                                "a": err.strip()[-600:], "sig": "crash"})
                workers.remove(w)
                workers.append(Worker())
            elif w.inflight is not None and now - w.sent_at > SCENARIO_TIMEOUT_S:
                w.kill()
                results.append({"seed": seed, "ok": False, "what": "hang", "sig": "hang"})
                workers.remove(w)
                workers.append(Worker())
    elapsed = time.monotonic() - t0
    failed = [r for r in results if not r.get("ok")]
    dump = os.environ.get("AFUT_DIFF_DUMP")
    if dump:
        with open(dump, "w") as f:
            for r in failed:
                f.write(json.dumps(r) + "\n")
    passed = len(results) - len(failed)
    print(f"ran {len(results)} scenarios in {elapsed:.1f} s", flush=True)
    print(f"events compared equal: {sum(compared.values())} (" + ", ".join(
        f"{k} {v}" for k, v in compared.most_common()) + ")")
    print("sanctioned-difference rules applied (times):")
    for rule in compare.RULES:
        extra = f", ended {truncated[rule]} scenarios early" if rule in truncated else ""
        print(f"  {rule}: {hits.get(rule, 0)}{extra}")
    if failed:
        kinds = Counter(r.get("sig") for r in failed)
        print(f"divergences by kind ({len(kinds)} kinds):")
        for k, v in kinds.most_common(20):
            print(f"  {v:6d}  {k}")
        shown = set()
        deadline = time.monotonic() + MINIMIZE_BUDGET_S
        for r in sorted(failed, key=lambda r: r.get("seed") or 0):
            if len(shown) >= SHOW:
                break
            if r.get("sig") in shown:
                continue
            shown.add(r.get("sig"))
            sc = scenario.generate(r["seed"])
            per = max(5.0, (deadline - time.monotonic()) / max(1, SHOW - len(shown) + 1))
            minimal, minimal_r = minimize(sc, r.get("sig"), time.monotonic() + per)
            print()
            print_divergence(r, sc, minimal, sys.stdout, minimal_r)
        print()
    print(f"{passed} passed, {len(failed)} failed")
    return 0 if not failed else 1


def replay(sc):
    import engine
    gc.disable()
    engine.AfutWorld.init_process()
    print(scenario.fmt_scenario(sc))
    out, a, b = run_pair(sc)
    if a is not None:
        width = 64
        print(f"\n{'asyncio':<{width}} afut")
        for i in range(max(len(a), len(b))):
            ea = repr(a[i]) if i < len(a) else ""
            eb = repr(b[i]) if i < len(b) else ""
            mark = " " if ea == eb else "*"
            print(f"{mark}{ea[:width - 2]:<{width - 1}} {eb}")
    print()
    if out.get("ok"):
        print("result: same" + (f" (ended early by rule {out['truncated']})"
                                if out.get("truncated") else ""))
        print(f"rules applied: {out.get('hits')}")
        print("1 passed, 0 failed")
        return 0
    print_divergence(out, sc, None, sys.stdout)
    print("0 passed, 1 failed")
    return 1


def main(argv):
    if "--worker" in argv:
        worker()
        return 0
    if "--rules" in argv:
        for name, text in compare.RULES.items():
            print(f"{name}:\n  {text}\n")
        return 0
    if "--replay-json" in argv:
        with open(argv[argv.index("--replay-json") + 1]) as f:
            return replay(scenario.from_json(f.read()))
    args = [a for a in argv[1:] if not a.startswith("-")]
    seed_env = os.environ.get("AFUT_DIFF_SEED")
    if seed_env and not args:
        return replay(scenario.generate(int(seed_env)))
    n = int(args[0]) if args else 20000
    base = int(seed_env) if seed_env else int.from_bytes(os.urandom(4), "little") * 100000
    nworkers = int(os.environ.get("AFUT_DIFF_JOBS", os.cpu_count() or 2))
    return drive(n, base, nworkers)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
