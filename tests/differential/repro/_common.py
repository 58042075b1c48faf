"""Runs one hand-written scenario in asyncio and in afut and shows both event logs.

Used by the reproducers in this directory (one file per divergence found by the
differential test). The afut side runs in a child process, so that a crash of the library
is reported as such (freed memory is overwritten there: MALLOC_PERTURB_). Exit status: 1
while afut diverges from asyncio (or crashes), 0 once the two agree.
"""

import gc
import json
import os
import subprocess
import sys
import warnings

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import compare  # noqa: E402
import engine  # noqa: E402
import scenario  # noqa: E402


def _tuples(x):
    if isinstance(x, list):
        return tuple(_tuples(i) for i in x)
    return x


def run(sc, title):
    sc = dict(sc)
    sc.setdefault("seed", 0)
    sc.setdefault("scripts", [])
    sc.setdefault("tasks", [])
    warnings.simplefilter("ignore", RuntimeWarning)
    gc.disable()
    if os.environ.get("_AFUT_REPRO_CHILD"):
        engine.AfutWorld.init_process()
        events = engine.AfutWorld(sc).run_scenario()
        sys.stdout.write(json.dumps(events))
        return
    print(title)
    print()
    print(scenario.fmt_scenario(sc))
    a = engine.AsyncioWorld(sc).run_scenario()
    env = dict(os.environ, _AFUT_REPRO_CHILD="1")
    env.setdefault("MALLOC_PERTURB_", "165")
    child = subprocess.run([sys.executable, os.path.abspath(sys.argv[0])], env=env,
                           capture_output=True, text=True, timeout=60)
    if child.returncode != 0:
        print(f"\nafut: the process died (exit status {child.returncode})")
        print(child.stderr.strip()[-1500:])
        print("\nDIVERGES (afut crashed)")
        sys.exit(1)
    b = _tuples(json.loads(child.stdout))
    width = 62
    print(f"\n  {'asyncio':<{width}} afut")
    for i in range(max(len(a), len(b))):
        ea = repr(a[i]) if i < len(a) else ""
        eb = repr(b[i]) if i < len(b) else ""
        print(f"{' ' if ea == eb else '*'} {ea[:width - 1]:<{width}} {eb}")
    res = compare.compare(sc, a, b)
    print()
    if res.ok and not res.truncated:
        print("SAME (no divergence that a rule does not sanction)")
        sys.exit(0)
    if res.ok:
        print(f"ended early by the sanctioned rule {res.truncated}")
        sys.exit(0)
    print(f"DIVERGES: {res.what}\n  asyncio: {res.a_ev}\n  afut:    {res.b_ev}")
    sys.exit(1)
