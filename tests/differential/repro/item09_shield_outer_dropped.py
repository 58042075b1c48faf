#!/usr/bin/env python3
"""Issue 10 item 9: a shield outer is held only weakly by its inner.

The caller adds a done-callback to the shield's outer and drops its reference. In asyncio
the inner's callback keeps the outer alive: the outer completes and its callback runs. afut
frees the outer at once: the callback never runs.
"""
from _common import run

run({"ops": [["new", 0],
             ["shield", 1, 0],
             ["add_cb", 1, 0],
             ["unref", 1],
             ["set_result", 0, 4],
             ["run_once"],
             ["run_once"]],
     "scripts": [[]]},
    __doc__)
