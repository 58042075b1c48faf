#!/usr/bin/env python3
"""Issue 10 item 6, with a task: the task's own step drops the last reference to it, then
the task fails while run_until_complete runs it.

asyncio's run_until_complete holds the task and raises its exception (retrieving it): no
report. afut frees the task once its step and callbacks are done: "Task exception was never
retrieved" during the run, then the run reads the freed task.
"""
from _common import run

run({"ops": [["task", 0, 0],
             ["ruc", 0, 4]],
     "tasks": [[{"actions": [["unref", 0]], "term": ["yield", "propagate"]},
                {"actions": [], "term": ["raise", 4]}]]},
    __doc__)
