#!/usr/bin/env python3
"""New (item 9's class, for wait_for): a wait_for outer is held only weakly by its inner.

The caller adds a done-callback to afut_wait_for's future and drops its reference. In
asyncio the wait_for task is kept alive by the inner future's callback: it completes and
the callback runs. afut frees the wait_for future at once: the callback never runs. When the
inner fails instead, asyncio reports the wait_for's exception as never retrieved, afut the
inner's (see new_wait_for_outer_dropped_report.py).
"""
from _common import run

run({"ops": [["new", 0],
             ["wait_for", 1, 0, float("inf")],
             ["add_cb", 1, 0],
             ["unref", 1],
             ["set_result", 0, 4],
             ["run_once"],
             ["run_once"]],
     "scripts": [[]]},
    __doc__)
