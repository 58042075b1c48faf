#!/usr/bin/env python3
"""New: wait_for of a future that FINISHED with a CancelledError exception.

A gather whose child was cancelled finishes with a CancelledError exception (in both, as
asyncio's gather does: code AFUT_ERR_CANCELLED in afut). asyncio's wait_for awaits it: the
CancelledError propagates out of the coroutine and the wait_for task ends CANCELLED. afut's
wait_for copies the outcome: FINISHED with the exception AFUT_ERR_CANCELLED.
"""
from _common import run

run({"ops": [["new", 0],
             ["cancel", 0, "m1"],
             ["gather", 1, [0], False],
             ["wait_for", 2, 1, 1e4],
             ["run_once"],
             ["state", 2],
             ["result", 2]]},
    __doc__)
