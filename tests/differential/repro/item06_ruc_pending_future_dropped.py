#!/usr/bin/env python3
"""Issue 10 item 6: use-after-free in afut_loop_run_until_complete.

A callback drops the last reference to the (pending) future being run; the run is stopped
(here by the harness's ticker) before the future is done. asyncio's run_until_complete holds
the future: it returns "Event loop stopped before Future completed." afut's keeps no
reference: after the run it reads the freed future (remove the stop callback, check done):
SIGSEGV, or "double free" with MALLOC_PERTURB_.
"""
from _common import run

run({"ops": [["new", 0],
             ["call_soon", 0, 0],
             ["ruc", 0, 3]],
     "scripts": [[["unref", 0]]]},
    __doc__)
