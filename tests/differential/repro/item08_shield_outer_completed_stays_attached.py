#!/usr/bin/env python3
"""Issue 10 item 8: a shield outer completed by its caller stays attached to the inner.

asyncio's outer done-callback removes the inner's callback whenever the outer is done
(_outer_done_callback: `if not inner.done(): inner.remove_done_callback(...)`), whatever
completed it. afut removes it only when the outer was cancelled: the inner keeps one more
callback (final state cb count), which then runs when the inner completes (run_once count).
"""
from _common import run

run({"ops": [["new", 0],
             ["shield", 1, 0],
             ["set_result", 1, 5],
             ["run_once"],
             ["state", 0],
             ["set_result", 0, 7],
             ["run_once"]]},
    __doc__)
