#!/usr/bin/env python3
"""Issue 10 item 8: a shield outer completed by its caller, then the inner fails.

asyncio detached the outer from the inner one iteration after the caller completed it, so
nothing reads the inner's exception: when the inner is dropped, "Future exception was never
retrieved" is reported for it. afut's shield callback is still attached, runs, and marks the
inner's exception retrieved: no report.
"""
from _common import run

run({"ops": [["new", 0],
             ["shield", 1, 0],
             ["set_result", 1, 5],
             ["run_once"],
             ["set_exception", 0, 3],
             ["run_once"],
             ["unref", 0]]},
    __doc__)
