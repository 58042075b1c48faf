#!/usr/bin/env python3
"""Issue 10 item 6: use-after-free in afut_loop_run_until_complete (failed future).

The future being run fails; its own done-callback drops the last reference. asyncio's
run_until_complete holds the future, reads its exception (which retrieves it) and raises
it: no report. afut frees the future when the loop drops its callbacks' references, so it
reports "Future exception was never retrieved" during the run, then reads the freed future
to compute its return value.
"""
from _common import run

run({"ops": [["new", 0],
             ["add_cb", 0, 0],
             ["set_exception", 0, 5],
             ["ruc", 0, 1]],
     "scripts": [[["unref", 0]]]},
    __doc__)
