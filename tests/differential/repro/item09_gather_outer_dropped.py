#!/usr/bin/env python3
"""Issue 10 item 9: a gather outer is held only weakly by its children.

The caller adds a done-callback to the gather and drops its reference. In asyncio the
children's callbacks keep the outer alive until it completes: the callback runs. afut frees
the outer at once: the callback never runs.
"""
from _common import run

run({"ops": [["new", 0],
             ["gather", 1, [0], False],
             ["add_cb", 1, 0],
             ["unref", 1],
             ["set_result", 0, 4],
             ["run_once"],
             ["run_once"]],
     "scripts": [[]]},
    __doc__)
