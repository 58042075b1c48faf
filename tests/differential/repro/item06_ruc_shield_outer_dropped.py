#!/usr/bin/env python3
"""Issue 10 item 6 (with item 9): run_until_complete on a shield outer that a callback drops.

asyncio's run_until_complete holds the outer (and the inner's callback holds it too): the
run ends when the ticker stops it, "Event loop stopped before Future completed." afut frees
the outer when the callback drops the last reference, then reads it after the run: the
process aborts ("double free detected") or crashes.
"""
from _common import run

run({"ops": [["new", 0],
             ["shield", 1, 0],
             ["call_soon", 0, 0],
             ["ruc", 1, 1]],
     "scripts": [[["unref", 1]]]},
    __doc__)
