#!/usr/bin/env python3
"""Issue 10 item 7: afut_shield copies the inner's cancel message onto the outer.

asyncio's shield cancels the outer with outer.cancel(), without a message
(tasks.py _inner_done_callback). afut's outer is cancelled with the inner's message.
"""
from _common import run

run({"ops": [["new", 0],
             ["shield", 1, 0],
             ["cancel", 0, "m1"],
             ["run_once"],
             ["result", 1]]},
    __doc__)
