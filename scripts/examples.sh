#!/usr/bin/env bash
# Build afut (release), then build, run and check the examples.
#
#   scripts/examples.sh                   # every example
#   scripts/examples.sh hello             # just one (or several) by name
#   scripts/examples.sh --valgrind ...    # C examples under valgrind (definite leaks = failure)
#   scripts/examples.sh --sanitize ...    # C examples built with -fsanitize=address,undefined
#   scripts/examples.sh --list            # the example names
#
# Each example's output is shown live and also checked: the lines it must
# print, no error report, exit status 0, within a time limit. The last line is
# "N passed, N failed"; the exit status is non-zero if any example failed.
#
# hello needs only cargo and gcc. libuv_host needs libuv1-dev, glib_host needs
# libglib2.0-dev (both through pkg-config), asyncio_bridge and echo_server (whose
# client, examples/python/echo_client.py, is written with asyncio) need python3:
# scripts/install-deps.sh installs the Debian packages.
# Outputs go to target/examples/ (binaries and NAME.log).
#
# To check the examples against another build of afut (an installed one, say),
# set AFUT_LIB_DIR (holding libafut.so) and optionally AFUT_INCLUDE_DIR
# (holding afut.h); cargo is then not run.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ALL=(hello hello_task hello_coro epoll_host libuv_host glib_host thread_pool executor virtual_time_test echo_server asyncio_bridge)
OUT="$ROOT/target/examples"
LIBDIR="${AFUT_LIB_DIR:-$ROOT/target/release}"
INCDIR="${AFUT_INCLUDE_DIR:-$ROOT/include}"
PYTHON="${PYTHON:-python3}"
ECHO_CONNS=100 # echo_server: concurrent client connections
ECHO_IDLE=5    # echo_server: idle connections cancelled by the SIGTERM shutdown

valgrind_mode=0
sanitize_mode=0
names=()
for arg in "$@"; do
    case "$arg" in
        --valgrind) valgrind_mode=1 ;;
        --sanitize) sanitize_mode=1 ;;
        --list) printf '%s\n' "${ALL[@]}"; exit 0 ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "examples: unknown option $arg" >&2; exit 2 ;;
        *)
            known=0
            for n in "${ALL[@]}"; do [ "$n" = "$arg" ] && known=1; done
            if [ "$known" -eq 0 ]; then
                echo "examples: unknown example '$arg' (known: ${ALL[*]})" >&2
                exit 2
            fi
            names+=("$arg")
            ;;
    esac
done
[ "${#names[@]}" -eq 0 ] && names=("${ALL[@]}")

# ---------------------------------------------------------------- build the library
if [ -n "${AFUT_LIB_DIR:-}" ]; then
    echo "==> using $LIBDIR/libafut.so and $INCDIR/afut.h"
elif echo "==> cargo build --release" && ! (cd "$ROOT" && cargo build --release); then
    echo "examples: cargo build --release failed"
    echo "0 passed, ${#names[@]} failed"
    exit 1
fi
mkdir -p "$OUT/lib"

# The shared library carries a versioned SONAME (libafut.so.0.N); cargo writes
# only libafut.so, so give the loader the name it will look for.
soname="$(readelf -d "$LIBDIR/libafut.so" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')"
if [ -n "$soname" ] && [ "$soname" != "libafut.so" ]; then
    ln -sf "$LIBDIR/libafut.so" "$OUT/lib/$soname"
fi

CFLAGS=(-std=c11 -Wall -Wextra -Werror -O2 -g -pthread -I"$INCDIR")
LDFLAGS=(-L"$LIBDIR" -lafut -Wl,-rpath,"$OUT/lib" -Wl,-rpath,"$LIBDIR")
if [ "$sanitize_mode" -eq 1 ]; then
    CFLAGS+=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
fi
RUNNER=()
TIMEOUT=20
if [ "$valgrind_mode" -eq 1 ]; then
    RUNNER=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99)
    TIMEOUT=120
fi

# ---------------------------------------------------------------- per-example setup
pkgs_for() {
    case "$1" in
        libuv_host) echo libuv ;;
        glib_host) echo glib-2.0 ;;
        *) echo "" ;;
    esac
}

# Builds target/examples/NAME from examples/NAME.c.
compile() {
    local name="$1" pkgs extra_c=() extra_l=()
    pkgs="$(pkgs_for "$name")"
    if [ -n "$pkgs" ]; then
        if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists "$pkgs"; then
            echo "examples: $name needs pkg-config '$pkgs': run scripts/install-deps.sh"
            return 1
        fi
        read -r -a extra_c <<<"$(pkg-config --cflags "$pkgs")"
        read -r -a extra_l <<<"$(pkg-config --libs "$pkgs")"
    fi
    if [ -f "$ROOT/examples/$name.cpp" ]; then
        # C++ examples use include/afut.hpp (C++20 coroutines).
        g++ -std=c++20 -Wall -Wextra -Werror -O2 -g -pthread -I"$INCDIR" "$ROOT/examples/$name.cpp" \
            -o "$OUT/$name" "${LDFLAGS[@]}"
        return
    fi
    gcc "${CFLAGS[@]}" "${extra_c[@]}" "$ROOT/examples/$name.c" -o "$OUT/$name" \
        "${LDFLAGS[@]}" "${extra_l[@]}"
}

# Command-line arguments of an example (one per line); may create its input files.
args_for() {
    case "$1" in
        executor)
            # Files of known contents (their FNV-1a hashes are in check_executor), and one
            # that does not exist.
            local d="$OUT/executor-data"
            mkdir -p "$d"
            printf 'hello\n' >"$d/small.txt"
            : >"$d/empty"
            yes afut | head -c 4194304 >"$d/big.bin"
            rm -f "$d/missing"
            printf '%s\n' "$d/big.bin" "$d/small.txt" "$d/missing" "$d/empty"
            ;;
    esac
}

# ---------------------------------------------------------------- checks
# Each check_NAME reads the log ($1) and prints one line per problem.
expect() { # expect LOG REGEX [COUNT]: REGEX (grep -E, whole line) matches COUNT lines (default: at least 1)
    local got
    got="$(grep -Ec -- "^($2)\$" "$1")"
    if [ -n "${3:-}" ]; then
        [ "$got" -eq "$3" ] || echo "expected $3 line(s) matching /$2/, got $got"
    else
        [ "$got" -ge 1 ] || echo "missing a line matching /$2/"
    fi
}

check_hello() {
    local want=$'hello ...\n... world'
    [ "$(cat "$1")" = "$want" ] || echo "output is not exactly 'hello ...' then '... world'"
    # about a second between the two lines: the whole run takes at least 0.9 s
    [ "$2" -ge 900 ] || echo "finished after ${2} ms: the timer should take about 1 s"
}
# The same program written as a C task (afut_task_new) and as a C++20 coroutine.
check_hello_task() { check_hello "$@"; }
check_hello_coro() { check_hello "$@"; }

check_epoll_host() {
    expect "$1" '\[[0-9.]+s\] worker 0: sum of squares 1\.\.1000 = 333833500'
    expect "$1" '\[[0-9.]+s\] worker 1: sum of squares 1\.\.2000 = 2668667000'
    expect "$1" '\[[0-9.]+s\] worker 2: sum of squares 1\.\.3000 = 9004500500'
    expect "$1" '\[[0-9.]+s\] afut timer fired \(scheduled for 0\.15s\)'
    expect "$1" '\[[0-9.]+s\] call_soon chain: 5 steps, one per iteration'
    expect "$1" '\[[0-9.]+s\] afut_sleep\(0\.3\) done with "good morning"'
    expect "$1" 'host: timerfd ticked [1-9][0-9]* times; afut ran [0-9]+ callbacks in [0-9]+ dispatches \([0-9]+ found work after a timeout\)'
    expect "$1" 'epoll_host: all done'
}

check_libuv_host() {
    expect "$1" 'job 0: 17984 primes below 200000'
    expect "$1" 'job 1: 168 primes below 1000'
    expect "$1" 'job 2: 5133 primes below 50000'
    expect "$1" 'afut call_later\(0\.2\) fired after [0-9]+ host ticks'
    expect "$1" 'afut_sleep\(0\.1\) done with "rested"'
    expect "$1" 'libuv_host: [0-9]+ afut dispatches, all done'
}

check_glib_host() {
    expect "$1" 'done-callback in the GLib thread: worker 0 slept 120 ms'
    expect "$1" 'done-callback in the GLib thread: worker 1 slept 40 ms'
    expect "$1" 'done-callback in the GLib thread: worker 2 slept 80 ms'
    expect "$1" 'afut call_later\(0\.15\) fired after [0-9]+ GLib ticks'
    expect "$1" 'glib_host: [0-9]+ afut dispatches, all done'
}

check_thread_pool() {
    # The cancelled job's callback was queued before any worker started: always first.
    expect "$1" '#1  job 3: cancelled \(result no longer needed\)'
    expect "$1" '#[2-8]  job 0: sum of primes below 1000000 = 37550402023'
    expect "$1" '#[2-8]  job 1: sum of primes below 10 = 17'
    expect "$1" '#[2-8]  job 2: sum of primes below 500000 = 9914236195'
    expect "$1" '#[2-8]  job 4: sum of primes below 100000 = 454396537'
    expect "$1" '#[2-8]  job 5: sum of primes below 1000 = 76127'
    expect "$1" '#[2-8]  job 6: sum of primes below 200000 = 1709600813'
    expect "$1" '#[2-8]  job 7: sum of primes below 10000 = 5736396'
    local i
    for i in 1 2 3 4 5 6 7 8; do expect "$1" "#$i  job .*" 1; done
    expect "$1" '8 jobs, 0 callbacks off the loop thread'
}

# 100 concurrent clients, each payload echoed byte for byte (checked by the client), then
# SIGTERM with 5 idle connections open: the server cancels their tasks and exits.
check_echo_server() {
    expect "$1" 'echo_server: listening on 127\.0\.0\.1:[0-9]+'
    expect "$1" "echo_server: $ECHO_CONNS connections served, [0-9]+ bytes echoed, 0 failed, $ECHO_IDLE cancelled"
    expect "$1" "client: $ECHO_CONNS connections, [0-9]+ bytes sent, every byte echoed back in order"
    expect "$1" "client: $ECHO_IDLE idle connections closed by the server after SIGTERM"
    local sent echoed
    sent="$(sed -n 's/^client: [0-9]* connections, \([0-9]*\) bytes sent.*/\1/p' "$1")"
    echoed="$(sed -n 's/^echo_server: [0-9]* connections served, \([0-9]*\) bytes echoed.*/\1/p' "$1")"
    { [ -n "$sent" ] && [ "$sent" = "$echoed" ]; } || echo "the client sent ${sent:-?} bytes, the server echoed ${echoed:-?}"
    expect "$1" 'echo_server: signal received, shutting down' 1
}

check_executor() {
    expect "$1" '#[1-4] .*/executor-data/big\.bin: 4194304 bytes, fnv1a-64 ee706adbeb79058f'
    expect "$1" '#[1-4] .*/executor-data/small\.txt: 6 bytes, fnv1a-64 a9bc80cca21f28b3'
    expect "$1" '#[1-4] .*/executor-data/empty: 0 bytes, fnv1a-64 cbf29ce484222325'
    expect "$1" '#[1-4] failed: .*/executor-data/missing: No such file or directory \(errno 2\)'
    local i
    for i in 1 2 3 4; do expect "$1" "#$i .*" 1; done
    expect "$1" 'executor: 4 files, 1 failed'
}

check_virtual_time_test() {
    expect "$1" 'ok   recovers after 5 failures: 200 OK at t = 31 s after 6 attempts \([0-9.]+ ms of real time\)'
    expect "$1" 'ok   times out hanging attempts: 200 OK at t = 23 s after 3 attempts \([0-9.]+ ms of real time\)'
    expect "$1" 'ok   gives up after an hour: error: gave up after 20 attempts at t = 3511 s after 20 attempts \([0-9.]+ ms of real time\)'
    expect "$1" '3 passed, 0 failed'
}

check_asyncio_bridge() {
    expect "$1" "awaited afut future: 'hello from a foreign thread' after [0-9.]+s"
    expect "$1" 'awaited afut future raised AfutError\(code=42\): code 42: the sensor is unplugged'
    expect "$1" 'awaited afut_sleep\(0\.15\)'
    expect "$1" 'wait_for timed out; afut future cancelled: cancelled by asyncio'
    expect "$1" 'asyncio_bridge: all done'
}

# Reports that mean a bug whatever the example printed otherwise.
check_common() {
    grep -En -- 'never retrieved|Exception in callback|Traceback|panicked|FAILED|ERROR SUMMARY: [1-9]|runtime error:|AddressSanitizer|LeakSanitizer' "$1" |
        sed 's/^/unexpected: /'
}

# ---------------------------------------------------------------- run
passed=0
failed=0
failures=()
for name in "${names[@]}"; do
    echo "==> $name"
    log="$OUT/$name.log"
    : >"$log"
    if [ "$name" = asyncio_bridge ]; then
        cmd=(env AFUT_LIB="$LIBDIR/libafut.so" "$PYTHON" -u "$ROOT/examples/python/asyncio_bridge.py")
    elif [ "$name" = echo_server ]; then
        # The Python client starts the server (under valgrind if asked), drives it and checks
        # every byte; payloads are smaller under valgrind.
        if ! compile "$name"; then
            failed=$((failed + 1)); failures+=("$name (build)")
            continue
        fi
        max_bytes=262144
        [ "$valgrind_mode" -eq 1 ] && max_bytes=16384
        cmd=(env AFUT_UNDER_VALGRIND="$valgrind_mode" "$PYTHON" -u "$ROOT/examples/python/echo_client.py"
             --conns "$ECHO_CONNS" --idle "$ECHO_IDLE" --max-bytes "$max_bytes"
             -- "${RUNNER[@]}" "$OUT/$name" --max-conns $((ECHO_CONNS + ECHO_IDLE)))
    else
        if ! compile "$name"; then
            failed=$((failed + 1)); failures+=("$name (build)")
            continue
        fi
        mapfile -t args < <(args_for "$name")
        cmd=("${RUNNER[@]}" "$OUT/$name" "${args[@]}")
        [ "$valgrind_mode" -eq 1 ] && cmd=(env AFUT_UNDER_VALGRIND=1 "${cmd[@]}")
    fi
    start=$(date +%s%N)
    timeout -k 5 "$TIMEOUT" "${cmd[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    ms=$(( ($(date +%s%N) - start) / 1000000 ))

    problems="$("check_$name" "$log" "$ms"; check_common "$log")"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        problems="timed out after ${TIMEOUT} s${problems:+$'\n'$problems}"
    elif [ "$rc" -ne 0 ]; then
        problems="exit status $rc${problems:+$'\n'$problems}"
    fi
    if [ -z "$problems" ]; then
        echo "--- $name: ok (${ms} ms)"
        passed=$((passed + 1))
    else
        echo "--- $name: FAILED (${ms} ms)"
        sed 's/^/    /' <<<"$problems"
        failed=$((failed + 1)); failures+=("$name")
    fi
done

[ "$failed" -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
