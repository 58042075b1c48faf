#!/usr/bin/env python3
"""New (item 9's class, for wait_for): the dropped wait_for and its inner's exception.

The caller drops afut_wait_for's future, then the inner fails. asyncio's wait_for task is
still alive (the inner's callback holds it): it takes the inner's exception (retrieving it)
and fails with it; nobody retrieves that, so the wait_for's exception is reported when it
goes. afut freed the wait_for: the inner's exception is reported instead.
"""
from _common import run

run({"ops": [["new", 0],
             ["wait_for", 1, 0, 1e4],
             ["unref", 1],
             ["set_exception", 0, 5],
             ["run_once"],
             ["run_once"]]},
    __doc__)
