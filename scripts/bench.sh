#!/usr/bin/env bash
# afut benchmark suite: builds the library (release) and the C benchmarks, runs
# every workload beside its hand-written C floor and Python's asyncio (and libuv for W3 and the
# I/O ping-pong), and prints one Markdown table of figures, ratios and targets.
#
#   scripts/bench.sh              # build, run everything (< 2 minutes on 2 cores), print the table
#   scripts/bench.sh --profile    # also: callgrind instructions per W1 and W2 operation (afut
#                                 # and floor, measured phase only) and afut's top functions
#   scripts/bench.sh --quick      # 1 repetition, smaller counts (a smoke test, not figures)
#
# Environment: BENCH_REPS (default 5), BENCH_SCALE (default 1), BENCH_CPU (the ping-pong's
# core; default: the first one the process may use), BENCH_PYTHON (default:
# ~/.pyenv/versions/3.13.0/bin/python3, else python3; "none" skips the asyncio column),
# CC (default cc), BENCH_NO_BUILD=1 (skip cargo build, use the existing
# target/release/libafut.so).
# Outputs: target/bench/ (binaries, the library copy they run against, results.txt with
# every raw "@ key value" line, table.md, callgrind files).
#
# Timings on a shared 2-core machine are noisy: read the ratios, which are measured side by
# side in one run, not the absolute figures.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/target/bench"
profile=0
for arg in "$@"; do
    case "$arg" in
        --profile) profile=1 ;;
        --quick) export BENCH_REPS="${BENCH_REPS:-1}" BENCH_SCALE="${BENCH_SCALE:-0.1}" ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if [ -z "${BENCH_PYTHON+x}" ]; then
    if [ -x "$HOME/.pyenv/versions/3.13.0/bin/python3" ]; then
        BENCH_PYTHON="$HOME/.pyenv/versions/3.13.0/bin/python3"
    elif command -v python3 >/dev/null; then
        BENCH_PYTHON="$(command -v python3)"
    else
        BENCH_PYTHON=none
    fi
fi
export BENCH_PYTHON BENCH_DIR="$root/benches"

if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
    echo "== BENCH_NO_BUILD=1: using the existing target/release/libafut.so" >&2
else
    echo "== building libafut (release)" >&2
    (cd "$root" && cargo build --release --quiet --lib)
fi

# Run against a private copy, so a rebuild in target/release cannot change the library
# under a running benchmark; the SONAME symlink lets the dynamic linker find it.
mkdir -p "$out/lib"
cp -f "$root/target/release/libafut.so" "$out/lib/libafut.so"
ln -sf libafut.so "$out/lib/libafut.so.0.1"

cc="${CC:-cc}"
cflags=(-O2 -g -std=c11 -Wall -Wextra -Werror -pthread -I"$root/include")
ldflags=(-L"$out/lib" -lafut -Wl,-rpath,"$out/lib" -lm)
uv_cflags=() uv_libs=()
if pkg-config --exists libuv 2>/dev/null; then
    uv_cflags=(-DHAVE_LIBUV $(pkg-config --cflags libuv))
    uv_libs=($(pkg-config --libs libuv))
else
    echo "== libuv not found (scripts/install-deps.sh installs libuv1-dev): no libuv column" >&2
fi
echo "== building benches/ with $cc" >&2
for prog in bench_w1 bench_threads bench_idle; do
    "$cc" "${cflags[@]}" -o "$out/$prog" "$root/benches/$prog.c" "${ldflags[@]}"
done
for prog in bench_timers bench_io; do
    "$cc" "${cflags[@]}" "${uv_cflags[@]}" -o "$out/$prog" "$root/benches/$prog.c" "${ldflags[@]}" "${uv_libs[@]}"
done

results="$out/results.txt"
: >"$results"
echo "== python: $BENCH_PYTHON; reps: ${BENCH_REPS:-5}; scale: ${BENCH_SCALE:-1}; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start=$(date +%s)
for prog in bench_w1 bench_threads bench_timers bench_idle bench_io; do
    echo "== $prog" >&2
    "$out/$prog" | tee -a "$results" >&2
done
echo "== benchmarks took $(( $(date +%s) - start )) s" >&2

if [ "$profile" -eq 1 ]; then
    if command -v valgrind >/dev/null; then
        # Counts only the measured phase (the programs toggle collection around it), so setup
        # and teardown are left out. BENCH_SCALE=0.1: W1 makes 20000 operations, W2 40000.
        # Callgrind runs threads one at a time: W2's count is the work of every thread per
        # completion, not a wall-clock figure.
        profile_one() { # name program mode ops
            local name=$1 prog=$2 mode=$3 ops=$4 file="$out/callgrind.out.$1" total
            rm -f "$file"
            echo "== callgrind: $name ($ops operations)" >&2
            BENCH_SCALE=0.1 valgrind --tool=callgrind --collect-atstart=no --fair-sched=yes \
                --callgrind-out-file="$file" "$out/$prog" "$mode" >&2 2>"$out/callgrind.$name.log" || true
            # (awk reads to the end: an early exit would make callgrind_annotate fail on a
            # closed pipe, and pipefail would end the script.)
            total=$(callgrind_annotate --auto=no "$file" 2>/dev/null \
                | awk '/PROGRAM TOTALS/ && !t { t = $1; gsub(",", "", t) } END { print t }') || total=""
            if [ -n "$total" ]; then
                echo "@ $name $(awk -v t="$total" -v n="$ops" 'BEGIN { printf "%.1f", t / n }')" | tee -a "$results" >&2
            fi
        }
        profile_one ir_w1.afut bench_w1 afut-w1 20000
        profile_one ir_w1.floor bench_w1 floor-w1 20000
        profile_one ir_w2.afut bench_threads afut-w2 40000
        profile_one ir_w2.floor bench_threads floor-w2 40000
        callgrind_annotate --inclusive=no "$out/callgrind.out.ir_w1.afut" >"$out/callgrind.txt" 2>/dev/null || true
        callgrind_annotate --inclusive=yes "$out/callgrind.out.ir_w1.afut" >"$out/callgrind-inclusive.txt" 2>/dev/null || true
        if [ "$BENCH_PYTHON" != none ]; then
            for w in w1 w2; do
                ops=20000; [ $w = w2 ] && ops=40000
                echo "== afut $w: top functions" >&2
                "$BENCH_PYTHON" "$root/benches/callgrind_top.py" "$out/callgrind.out.ir_$w.afut" $ops 20 \
                    | tee "$out/callgrind-top-$w.txt" >&2
            done
        else
            sed -n '1,45p' "$out/callgrind.txt" >&2
        fi
    else
        echo "== valgrind not installed: no profile" >&2
    fi
fi

# ---- the table ---------------------------------------------------------------------------
awk '
$1 == "@" { v[$2] = $3 }
function has(k) { return (k in v) && v[k] != "" && v[k] != "nan" }
function num(k, fmt) { return has(k) ? sprintf(fmt, v[k]) : "-" }
function mops(k, fmt) { return has(k) ? sprintf(fmt "; %.0f", v[k], 1000 / v[k]) : "-" }
function ratio(x, fmt) { return x == "" ? "-" : sprintf(fmt, x) }
function ok(c) { return c ? "yes" : "**no**" }
# A cost row (lower is better): afut/floor and asyncio/afut are cost ratios.
#   kind "w1": asyncio/afut >= limit and afut/floor <= limit2; "floor": afut/floor <= limit;
#   "max": afut <= limit; anything else: no target.
function cost(name, key, unit, fmt, target, kind, limit, limit2,   a, f, p, u, af, pa, met) {
    a = v[key ".afut"]; f = v[key ".floor"]; p = v[key ".asyncio"]; u = v[key ".libuv"]
    af = has(key ".floor") ? a / f : ""
    pa = has(key ".asyncio") ? p / a : ""
    if (kind == "w1") met = ok(pa != "" && pa >= limit && af <= limit2)
    else if (kind == "floor") met = ok(af != "" && af <= limit)
    else if (kind == "max") met = ok(a <= limit)
    else met = "-"
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name " (" unit ")", num(key ".afut", fmt),
        num(key ".floor", fmt), num(key ".asyncio", fmt), num(key ".libuv", fmt),
        ratio(af, "%.2fx"), ratio(pa, "%.1fx"), target, met
}
# A throughput row (higher is better): afut/floor is a throughput ratio, asyncio/afut the
# speed-up over asyncio. need: the afut/floor throughput ratio to reach (0: no target).
function rate(name, key, target, need,   a, f, p, af, pa, met) {
    a = v[key ".afut"]; f = v[key ".floor"]; p = v[key ".asyncio"]
    af = has(key ".floor") ? a / f : ""
    pa = has(key ".asyncio") ? a / p : ""
    met = need > 0 ? ok(af != "" && af >= need) : "-"
    printf "| %s | %s | %s | %s | - | %s | %s | %s | %s |\n", name " (Mops/s; ns/op)", mops(key ".afut", "%.2f"),
        mops(key ".floor", "%.2f"), mops(key ".asyncio", "%.3f"),
        ratio(af, "%.2fx tput"), ratio(pa, "%.0fx"), target, met
}
END {
    print "| workload | afut | C floor | asyncio | libuv | afut/floor | asyncio/afut | target | met? |"
    print "|---|---|---|---|---|---|---|---|---|"
    cost("W1: create, 1 callback, set_result, run_once, free", "w1", "ns/op", "%.1f",
         "<= 3x floor (aim 2x), >= 80x faster than asyncio", "w1", 80, 3)
    cost("W1r (info): W1 inside a running loop, no wakeup needed", "w1r", "ns/op", "%.1f",
         "(info)", "none")
    cost("W1b: 1000 futures, then one dispatch", "w1b", "ns/future", "%.1f", "<= 1.5x floor", "floor", 1.5)
    rate("W2: 1 producer thread", "w2_1p", ">= 0.9x floor throughput", 0.9)
    rate("W2: 2 producer threads", "w2_2p", ">= 0.9x floor throughput", 0.9)
    rate("W2: 4 producer threads", "w2_4p", "(info: contention on 2 cores)", 0)
    rate("W2: 8 producer threads", "w2_8p", "(info: contention on 2 cores)", 0)
    cost("W2 ping-pong p50, one core", "pp_p50", "us", "%.2f", "<= 1.15x raw eventfd", "floor", 1.15)
    cost("W2 ping-pong p99, one core", "pp_p99", "us", "%.2f", "(no target)", "none")
    cost("W3: 1e5 call_later <= 10 ms, CPU per timer", "w3", "ns", "%.0f", "<= 1.5x floor", "floor", 1.5)
    rate("W4: host epoll + afut_loop_fd + run_once, 1 producer", "w4", "(see the W4/W2 row)", 0)
    if (has("w4.afut") && has("w2_1p.afut"))
        printf "| W4/W2: host-driven throughput over run_until_complete, 1 producer | %.2fx | - | - | - | - | - | within 10%% of W2 (>= 0.90x) | %s |\n",
            v["w4.afut"] / v["w2_1p.afut"], ok(v["w4.afut"] / v["w2_1p.afut"] >= 0.9)
    printf "| Idle 0.5 s, 1000 timers 1 h away: wakeups / kernel sleeps / CPU | %s / %s / %s us (host mode: %s / %s / %s us) | %s / %s / %s us | - / %s / %s us | - | - | - | 0 wakeups while waiting | %s |\n",
        num("idle_wakeups.afut", "%d"), num("idle_sleeps.afut", "%d"), num("idle_cpu.afut", "%.0f"),
        num("idle_wakeups.afut_host", "%d"), num("idle_sleeps.afut_host", "%d"), num("idle_cpu.afut_host", "%.0f"),
        num("idle_wakeups.floor", "%d"), num("idle_sleeps.floor", "%d"), num("idle_cpu.floor", "%.0f"),
        num("idle_sleeps.asyncio", "%d"), num("idle_cpu.asyncio", "%.0f"),
        ok(v["idle_wakeups.afut"] == 0 && v["idle_wakeups.afut_host"] == 0)
    cost("Memory per pending future with 1 callback", "mem", "bytes", "%.0f", "<= 96 bytes", "max", 96)
    if (has("ir_w1.afut"))
        cost("Instructions per W1 operation (callgrind)", "ir_w1", "instructions", "%.0f", "(info)", "none")
    if (has("ir_w2.afut"))
        cost("Instructions per W2 completion, all threads (callgrind)", "ir_w2", "instructions", "%.0f", "(info)", "none")
    cost("I/O ping-pong over a socketpair, round trip p50 (add_reader vs uv_poll)", "io_p50", "us", "%.2f", "(no target)", "none")
    cost("I/O ping-pong over a socketpair, round trip p99", "io_p99", "us", "%.2f", "(no target)", "none")
    printf "| I/O ping-pong throughput (k msgs/s) | %s | %s | %s | %s | %s | %s | (no target) | - |\n",
        num("io_rate.afut", "%.0f"), num("io_rate.floor", "%.0f"), num("io_rate.asyncio", "%.0f"),
        num("io_rate.libuv", "%.0f"),
        has("io_rate.floor") ? sprintf("%.2fx tput", v["io_rate.afut"] / v["io_rate.floor"]) : "-",
        has("io_rate.asyncio") ? sprintf("%.1fx", v["io_rate.afut"] / v["io_rate.asyncio"]) : "-"
    if (has("mem_nocb.afut"))
        printf "\nMemory: afut %.0f bytes per pending future without a callback; the first callback adds %.0f.\n",
            v["mem_nocb.afut"], v["mem.afut"] - v["mem_nocb.afut"]
}' "$results" | tee "$out/table.md"
