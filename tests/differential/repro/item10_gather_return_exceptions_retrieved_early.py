#!/usr/bin/env python3
"""Issue 10 item 10: gather(return_exceptions=True) marks a child's exception retrieved as
soon as that child fails.

asyncio reads the children's exceptions only when the gather completes. Here it never
completes (its other child stays pending), so when the failed child is dropped asyncio
reports "Future exception was never retrieved"; afut marked it retrieved already: no report.
"""
from _common import run

run({"ops": [["new", 0],
             ["new", 1],
             ["gather", 2, [0, 1], True],
             ["set_exception", 0, 5],
             ["run_once"],
             ["unref", 0]]},
    __doc__)
