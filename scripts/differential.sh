#!/usr/bin/env bash
# Differential test: afut against CPython 3.13's asyncio, on random scenarios
# (tests/differential/differential.py says what is compared and lists every sanctioned
# difference).
#
#   scripts/differential.sh [N]                      N scenarios (default 20000), fresh seed
#   AFUT_DIFF_SEED=<seed> scripts/differential.sh    replay that one scenario, both logs shown
#   AFUT_DIFF_SEED=<seed> scripts/differential.sh N  replay a whole run (seeds seed..seed+N-1)
#
# Environment: AFUT_PYTHON (a CPython 3.13; default: pyenv's 3.13.0, else python3.13 on PATH),
# AFUT_LIB (the libafut.so to test; default: built here with `cargo build`, debug assertions
# on), AFUT_DIFF_JOBS (worker processes; default: the number of CPUs), AFUT_DIFF_DUMP (a file
# that receives every divergence as a JSON line).
# Prints a closing line "N passed, N failed" (scenarios); exits 1 on any divergence that no
# rule sanctions, a crash or a hang.
set -euo pipefail
cd "$(dirname "$0")/.."

py="${AFUT_PYTHON:-}"
if [ -z "$py" ]; then
    for c in /root/.pyenv/versions/3.13.0/bin/python3 "$(command -v python3.13 || true)"; do
        if [ -n "$c" ] && [ -x "$c" ]; then py=$c; break; fi
    done
fi
if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    echo "differential: needs CPython 3.13 (set AFUT_PYTHON)" >&2
    exit 2
fi

if [ -z "${AFUT_LIB:-}" ]; then
    cargo build --lib --quiet
    export AFUT_LIB="$PWD/target/debug/libafut.so"
fi

exec "$py" tests/differential/differential.py "$@"
