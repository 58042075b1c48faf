"""The comparator: asyncio's event log against afut's, event by event.

Every rule that lets the two logs differ is one of the RULES below, each a deliberate
difference that API.md, include/afut.h or README.md documents (or a representation of the
same fact in the two languages). A rule is applied only where its precondition holds, and
every application is counted and printed at the end of a run. Nothing is skipped silently.

Rules of two sorts:
  - local: the two events at this position differ only in the documented way; the
    comparison goes on with the next event.
  - truncating: a documented difference of *timing* was triggered earlier (the asyncio world
    records where, as a "note"); from the first divergence after that point the two runs are
    no longer comparable, so the comparison of this scenario stops there (counted as
    "ended early by rule X"; everything before that point was compared).
"""

from collections import Counter

RULES = {
    # local rules
    "gc-cycle-until-close":
        "A pending gather, shield, wait_for or wait is held by its inputs' callbacks, as in "
        "asyncio (afut.h afut_gather, afut_shield, ...). When the application drops the outer "
        "future and every input, they form an unreachable cycle: CPython's garbage collector "
        "frees it (and makes its never-retrieved reports) at its next collection; afut, which "
        "counts references and has no collector, releases it when the loop closes (README "
        "'What differs from asyncio'). Accepted: a never-retrieved report that asyncio makes "
        "while collecting a cycle, made by afut during the teardown instead (the close); the "
        "same for a gather's input whose report CPython makes without a noted collection (the "
        "cycle's last outside reference went with a callback batch's handles).",
    "task-cancel-message":
        "A task's cancel message is stable in afut; asyncio returns it on the first retrieval "
        "only (later reads, and its _cancel_message, give none) (afut.h afut_task_new, README "
        "'What differs from asyncio'). Accepted: asyncio's message None where afut's is set, for "
        "tasks, asyncio's wait_for task, and what is read through them (a gather's child, an "
        "await's CancelledError).",
    "wait_for-is-a-future":
        "afut_wait_for returns a future; asyncio.wait_for is a coroutine, run here as a task "
        "(afut.h afut_wait_for). Accepted for wait_for slots: asyncio's 'Task exception was "
        "never retrieved' for afut's 'Future exception ...', asyncio's 'Task was destroyed but "
        "it is pending!' (afut has no task to report), cancelling()/uncancel() counts of "
        "asyncio's task where afut answers -1 (not a task), and the moment of a wait_for's "
        "never-retrieved report (asyncio's failed task lives on in its coroutine's traceback "
        "for a while): only that both worlds make it is compared.",
    "mirror-cancel-count":
        "Binding: a coroutine that lets a CancelledError out ends its asyncio task without a new "
        "cancel request; the C step function can only end its task cancelled with "
        "afut_task_cancel itself (afut.h afut_task_take_cancel: 'call afut_cancel(task, msg) "
        "and return'), one more request. Accepted: afut's cancelling()/uncancel() count "
        "exceeding asyncio's by at most the number of such calls the mirror made.",
    "report-order":
        "Several futures released by one drop: CPython's garbage collector finalizes a cycle in "
        "no specified order, afut frees in its own order. A run of consecutive reports is "
        "compared as a multiset.",
    "asyncio-shield-callback-error":
        "asyncio's shield callback (_inner_done_callback) sets the outer future's outcome "
        "unless the outer is cancelled; when the caller has completed the outer first it raises "
        "InvalidStateError, which the loop reports as 'Exception in callback'. afut has no error "
        "there. Accepted: that report; and since the error's traceback keeps the shield's futures "
        "alive in asyncio for a while, the scenario is compared only up to that point "
        "(truncating).",
    "teardown-reports":
        "At teardown (after loop.close()) the harness drops every slot; CPython collects the "
        "remaining cycles in no specified order. Reports after the close are compared as a "
        "multiset, the other events in order.",
    "gh-91887-task-lifetime":
        "afut keeps a pending task alive until the loop closes (afut.h afut_task_new, "
        "'Lifetime', gh-91887); asyncio reports 'Task was destroyed but it is pending!' when "
        "the task becomes garbage, afut at afut_loop_close. These reports are compared as a "
        "multiset of slots, wherever they occur.",
    "wait_for-completed-by-caller":
        "(truncating) afut's wait_for is a future, which its caller may complete with "
        "afut_set_result / afut_set_exception; asyncio's is a task, whose set_result raises "
        "RuntimeError (afut.h afut_wait_for). Triggered at that call: the wait_for's state "
        "differs from there.",
    "gh-85071-gather-cancel":
        "Cancelling a pending gather ends it CANCELLED at once in afut (afut.h afut_gather, "
        "gh-85071); asyncio cancels the children and ends the gather later, FINISHED with a "
        "CancelledError, or not at all when no child could be cancelled (then cancel() is "
        "False, bpo-26923). Once asyncio's _GatheringFuture.cancel ran on a pending gather G "
        "(recorded by the asyncio world), accepted for G only: cancel() True where asyncio says "
        "False; done()/cancelled(), result(), exception() and the final state CANCELLED with "
        "its message where asyncio's G is pending or FINISHED with a CancelledError; asyncio's "
        "'never retrieved' report of G's CancelledError. Any other divergence after that point "
        "ends the comparison of the scenario (G's callbacks and what awaits G run at other "
        "times).",
    # truncating rules
    "wait_for-timing":
        "afut's wait_for is a future registered on its inner at creation (afut.h afut_wait_for: "
        "'timeout_s <= 0 checks at once', 'completes one iteration after fut', 'Cancelling the "
        "wait_for ... ends the wait_for CANCELLED at once'); asyncio's runs as a task (started "
        "eagerly here when the inner is pending). Triggered when the timeout is <= 0 with the "
        "inner pending (asyncio's _cancel_and_wait takes one more iteration), or when the "
        "pending wait_for is cancelled (asyncio's task ends at its next step).",
    "stale-run_until_complete-stopper":
        "asyncio's run_until_complete leaves its stop callback queued when the run ended in the "
        "iteration the future completed in; the stale callback then stops a later run after one "
        "iteration. afut makes it inert (issue 10, 'One deliberate difference is "
        "undocumented'). Triggered when asyncio runs such a stale callback.",
}

TRUNCATING = ("gh-85071-gather-cancel", "wait_for-timing", "stale-run_until_complete-stopper",
              "wait_for-completed-by-caller")  # gh-85071 is also local, for the gather itself
NOTE_RULE = {"gather_cancel": "gh-85071-gather-cancel", "wf_timing": "wait_for-timing",
             "stale_stopper": "stale-run_until_complete-stopper",
             "shield_callback_error": "asyncio-shield-callback-error"}


class Kinds:
    """What each slot is, from the scenario's creating ops."""

    def __init__(self, sc):
        self.kind = {}
        self.inputs = {}
        ops = list(sc["ops"])
        for body in sc["scripts"]:
            ops.extend(body)
        for segs in sc["tasks"]:
            for seg in segs:
                ops.extend(seg["actions"])
        for op in ops:
            k = op[0]
            if k == "new":
                self.kind[op[1]] = "future"
            elif k == "gather":
                self.kind[op[1]] = "gather"
                self.inputs[op[1]] = op[2]
            elif k == "shield":
                self.kind[op[1]] = "shield"
                self.inputs[op[1]] = [op[2]]
            elif k == "wait_for":
                self.kind[op[1]] = "wait_for"
                self.inputs[op[1]] = [op[2]]
            elif k == "task":
                self.kind[op[1]] = "task"

        self.alias = {}

    def is_gather_input(self, s):
        """True if the object in slot s is an input of a gather of the scenario."""
        c = self.canon(s)
        return any(self.kind.get(g) == "gather" and any(self.canon(x) == c for x in ins)
                   for g, ins in self.inputs.items())

    def canon(self, s):
        """The slot that first held the object now in s (asyncio's shield(done) returns its
        argument itself, and so does afut's: the two slots are one object)."""
        seen = 0
        while s in self.alias and seen < 64:
            s = self.alias[s]
            seen += 1
        return s

    def of(self, s):
        return self.kind.get(self.canon(s))

    def tasklike(self, s):
        return self.of(s) in ("task", "wait_for")

    def carries_task_message(self, s, depth=0):
        """s is a task, or its cancellation can come from a task's CancelledError through a
        gather (a shield's outer is cancelled without a message in asyncio: not included)."""
        if self.tasklike(s):
            return True
        s = self.canon(s)
        if depth > 8 or self.of(s) != "gather":
            return False
        return any(self.carries_task_message(i, depth + 1) for i in self.inputs.get(s, ()))


def _is_cancel_outcome(o):
    return isinstance(o, tuple) and o and (o[0] == "cancelled" or (o[0] == "exc" and o[1] == -2))


def outcome_equiv(kinds, s, oa, ob, hits):
    if oa == ob:
        return True
    if (isinstance(oa, tuple) and isinstance(ob, tuple) and oa and ob and oa[0] == ob[0] == "gather"
            and len(oa[1]) == len(ob[1])):
        ins = kinds.inputs.get(s, [])
        return all(outcome_equiv(kinds, ins[i] if i < len(ins) else None, ca, cb, hits)
                   for i, (ca, cb) in enumerate(zip(oa[1], ob[1])))
    if (s is not None and _is_cancel_outcome(oa) and _is_cancel_outcome(ob)
            and oa[:-1] == ob[:-1] and oa[-1] is None and ob[-1] is not None
            and kinds.carries_task_message(s)):
        hits["task-cancel-message"] += 1
        return True
    return False


def _gather_cancelled_equiv(a, b):
    """gh-85071: afut's gather G is CANCELLED at once; asyncio's is pending, or FINISHED with
    a CancelledError (code -2)."""
    k = a[0]
    if k == "cancel":
        return b[2] is True
    if k == "state":
        return b[2:] == (True, True) and a[3] is False
    if k in ("result", "exception"):
        return b[2][0] == "cancelled" and (a[2] == ("pending",) or a[2][:2] == ("exc", -2))
    if k == "final":
        return (b[2] == "cancelled" and b[3][0] == "cancelled"
                and (a[2:4] == ("pending", ("pending",))
                     or (a[2] == "finished" and a[3][:2] == ("exc", -2) and a[4] == b[4])))
    return False


def event_equiv(kinds, a, b, hits, gathers_cancelled=()):
    """True if a and b are the same event up to a local rule (counted in hits)."""
    if a == b:
        return True
    if a[0] != b[0] or len(a) != len(b):
        return False
    k = a[0]
    if (k in ("cancel", "state", "result", "exception", "final") and a[1] == b[1]
            and kinds.canon(a[1]) in gathers_cancelled and _gather_cancelled_equiv(a, b)):
        hits["gh-85071-gather-cancel"] += 1
        return True
    if k in ("result", "exception") and a[1] == b[1]:
        return outcome_equiv(kinds, a[1], a[2], b[2], hits)
    if k == "final" and a[1] == b[1] and a[2] == b[2] and a[4] == b[4]:
        return outcome_equiv(kinds, a[1], a[3], b[3], hits)
    if k == "resume" and a[1] == b[1] and a[2] == b[2]:
        return outcome_equiv(kinds, a[2], a[3], b[3], hits)
    if k in ("cancelling", "uncancel") and a[1] == b[1]:
        s = a[1]
        if a[2] == b[2]:
            return True
        if kinds.of(s) == "wait_for" and b[2] == -1:
            hits["wait_for-is-a-future"] += 1
            return True
        if kinds.of(s) == "task" and 0 < b[2] - a[2] <= b[3]:
            hits["mirror-cancel-count"] += 1
            return True
    if (k in ("set_result", "set_exception") and a[1] == b[1]
            and kinds.of(a[1]) == "wait_for" and a[2] == "invalid_state" and b[2] == "ok"):
        return "wait_for-completed-by-caller"
    return False


def _norm_report(kinds, ev, hits, world):
    _, kind, slot, code = ev
    if world == "asyncio" and kinds.of(slot) == "wait_for" and kind == "task_never_retrieved":
        hits["wait_for-is-a-future"] += 1
        kind = "future_never_retrieved"
    return ("report", kind, slot, code)


class Result:
    def __init__(self):
        self.ok = True
        self.hits = Counter()
        self.compared = Counter()  # events found equal, by kind
        self.truncated = None      # rule name
        self.where = None          # (index in asyncio log, index in afut log)
        self.a_ev = self.b_ev = None
        self.context = []
        self.what = ""

    def signature(self):
        """What kind of divergence this is (for minimization: keep the same kind)."""
        def head(ev):
            if ev is None:
                return None
            return ev[:2] if ev[0] == "report" else ev[:1]
        return (self.what, head(self.a_ev), head(self.b_ev))


def compare(sc, A, B):
    kinds = Kinds(sc)
    res = Result()
    hits = res.hits

    # notes (asyncio only) with their positions; gh-91887 reports out of the sequence
    notes = []
    a_seq, b_seq = [], []
    a_destroyed, b_destroyed = Counter(), Counter()
    cancelled_done = set()
    gathers_cancelled = {}    # gather slot -> position of asyncio's cancel of it while pending
    cycle_reports = []       # asyncio reports made by its cycle collector
    a_floating, b_floating = Counter(), Counter()   # wait_for reports (wait_for-is-a-future)
    for i, ev in enumerate(A):
        if ev[0] == "note" and ev[1] == "alias":
            kinds.alias[ev[2]] = ev[3]
            continue
        if ev[0] == "note" and ev[1] == "cycle_report":
            rep = ("report",) + tuple(ev[2:])
            if kinds.of(rep[2]) == "wait_for":
                a_floating[_norm_report(kinds, rep, hits, "asyncio")] += 1
            else:
                cycle_reports.append(rep)
            continue
        if ev[0] == "note":
            if ev[1] in NOTE_RULE:
                notes.append((i, ev))
            if ev[1] == "gather_cancel_done":
                cancelled_done.add(kinds.canon(ev[2]))
            if ev[1] == "gather_cancel":
                gathers_cancelled.setdefault(kinds.canon(ev[2]), i)
        elif (ev[0] == "report" and ev[1] == "future_never_retrieved" and ev[3] == -2
              and kinds.canon(ev[2]) in gathers_cancelled):
            hits["gh-85071-gather-cancel"] += 1
        elif (ev[0] == "report" and ev[1] == "callback_error:shield.<locals>._inner_done_callback"
              and ev[3] == "InvalidStateError"):
            # asyncio's own error path: the exception's traceback keeps the shield's futures
            # alive for a while, so the timing of their reports is asyncio's artefact from here.
            notes.append((i, ("note", "shield_callback_error")))
        elif ev[0] == "report" and ev[1] == "destroyed_pending":
            if kinds.of(ev[2]) == "wait_for":
                hits["wait_for-is-a-future"] += 1
            else:
                a_destroyed[ev[2]] += 1
        elif ev[0] == "report" and ev[1].endswith("_never_retrieved") and kinds.of(ev[2]) == "wait_for":
            # asyncio's wait_for is a task, which its coroutine's traceback keeps alive for a
            # while after it failed: when its report comes is not compared, only that it does.
            a_floating[_norm_report(kinds, ev, hits, "asyncio")] += 1
        else:
            a_seq.append((i, ev))
    for i, ev in enumerate(B):
        if ev[0] == "report" and ev[1] == "destroyed_pending":
            b_destroyed[ev[2]] += 1
        elif ev[0] == "report" and ev[1].endswith("_never_retrieved") and kinds.of(ev[2]) == "wait_for":
            b_floating[_norm_report(kinds, ev, hits, "afut")] += 1
        else:
            b_seq.append((i, ev))

    def truncating_rule(a_index):
        for i, n in notes:
            if i < a_index:
                return NOTE_RULE[n[1]]
        return None

    def fail(what, i, j, a_index=None):
        a_ev = a_seq[i][1] if i < len(a_seq) else None
        b_ev = b_seq[j][1] if j < len(b_seq) else None
        if a_index is None:
            a_index = a_seq[i][0] if i < len(a_seq) else len(A)
        rule = truncating_rule(a_index)
        if rule is not None:
            res.truncated = rule
            hits[rule] += 1
            return res
        res.ok = False
        res.what = what
        res.where = (i, j)
        res.a_ev, res.b_ev = a_ev, b_ev
        res.context = [ev for _, ev in a_seq[max(0, i - 8):i]]
        return res

    def late_fail(what, a_ev, b_ev):
        """A divergence found after the walk (multisets): the truncating rules still apply."""
        rule = truncating_rule(len(A))
        if rule is not None:
            res.truncated = rule
            hits[rule] += 1
            return res
        res.ok = False
        res.what = what
        res.a_ev, res.b_ev = a_ev, b_ev
        res.where = (len(a_seq), len(b_seq))
        return res

    i = j = 0
    after_close = False
    while i < len(a_seq) or j < len(b_seq):
        a_ev = a_seq[i][1] if i < len(a_seq) else None
        b_ev = b_seq[j][1] if j < len(b_seq) else None
        if after_close:
            break
        if (a_ev and a_ev[0] == "report") or (b_ev and b_ev[0] == "report"):
            i2, j2 = i, j
            while i2 < len(a_seq) and a_seq[i2][1][0] == "report":
                i2 += 1
            while j2 < len(b_seq) and b_seq[j2][1][0] == "report":
                j2 += 1
            ra = Counter(_norm_report(kinds, ev, hits, "asyncio") for _, ev in a_seq[i:i2])
            rb = Counter(_norm_report(kinds, ev, hits, "afut") for _, ev in b_seq[j:j2])
            if ra != rb:
                # gc-cycle-until-close, when CPython frees the cycle without a collection
                # being noted (the last outside reference to a gather's failed input went with
                # the handles of a callback batch): the input's never-retrieved report is
                # asyncio's now and afut's at the close, where it is compared as a cycle report.
                deferred = [ev for _, ev in a_seq[i:i2]
                            if ev[1] == "future_never_retrieved" and kinds.is_gather_input(ev[2])
                            and _norm_report(kinds, ev, hits, "asyncio") not in rb]
                if deferred:
                    cycle_reports.extend(("report",) + tuple(ev[1:]) for ev in deferred)
                    for ev in deferred:
                        ra[_norm_report(kinds, ev, hits, "asyncio")] -= 1
                    ra = +ra
            if ra != rb:
                # A run of reports is one moment: a truncating note among them (asyncio's shield
                # callback error, say, reported between two of them) covers the whole run.
                run_end = a_seq[i2][0] if i2 < len(a_seq) else len(A)
                return fail("reports differ", i, j, run_end)
            if i2 - i > 1 and [ev for _, ev in a_seq[i:i2]] != [ev for _, ev in b_seq[j:j2]]:
                hits["report-order"] += 1
            res.compared["report"] += i2 - i
            i, j = i2, j2
            continue
        if a_ev is None or b_ev is None:
            return fail("one log ends early", i, j)
        eq = event_equiv(kinds, a_ev, b_ev, hits,
                         {g for g, p in gathers_cancelled.items() if p < a_seq[i][0]})
        if isinstance(eq, str):  # a truncating rule triggered by this very event
            res.truncated = eq
            hits[eq] += 1
            return res
        if not eq:
            return fail("events differ", i, j)
        res.compared[a_ev[0]] += 1
        i += 1
        j += 1
        if a_ev[0] == "close":
            after_close = True

    if after_close:
        ra = [ev for _, ev in a_seq[i:] if ev[0] != "report"]
        rb = [ev for _, ev in b_seq[j:] if ev[0] != "report"]
        if ra != rb:
            return fail("teardown events differ", i, j)
        la = [_norm_report(kinds, ev, hits, "asyncio") for _, ev in a_seq[i:] if ev[0] == "report"]
        if cycle_reports:
            hits["gc-cycle-until-close"] += 1
            la += [_norm_report(kinds, ev, hits, "asyncio") for ev in cycle_reports]
        lb = [_norm_report(kinds, ev, hits, "afut") for _, ev in b_seq[j:] if ev[0] == "report"]
        ca, cb = Counter(la), Counter(lb)
        if ca != cb:
            return late_fail("teardown reports differ",
                             ("reports",) + tuple(sorted(map(repr, (ca - cb).elements()))),
                             ("reports",) + tuple(sorted(map(repr, (cb - ca).elements()))))
        if la != lb:
            hits["teardown-reports"] += 1
        res.compared["report"] += len(la)
        for ev in ra:
            res.compared[ev[0]] += 1
    if a_floating != b_floating:
        return late_fail("wait_for reports differ",
                         ("reports",) + tuple(sorted(map(repr, (a_floating - b_floating).elements()))),
                         ("reports",) + tuple(sorted(map(repr, (b_floating - a_floating).elements()))))
    if a_floating:
        hits["wait_for-is-a-future"] += 1
    if a_destroyed != b_destroyed:
        only_a, only_b = a_destroyed - b_destroyed, b_destroyed - a_destroyed
        return late_fail("task destroyed-pending reports differ",
                         ("destroyed_pending",) + tuple(sorted(only_a.elements())),
                         ("destroyed_pending",) + tuple(sorted(only_b.elements())))
    if a_destroyed:
        hits["gh-91887-task-lifetime"] += 1
    return res
