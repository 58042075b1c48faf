#!/usr/bin/env bash
# Fuzzes afut with the model-based target fuzz/fuzz_model.c.
#
#   fuzz/run.sh [SECONDS]        fuzz for SECONDS (default 30), then print the figures
#   fuzz/run.sh --replay PATH..  replay inputs (a crash file, a corpus dir) once each
#
# What it does:
#   1. builds libafut.a with SanitizerCoverage (rustc -Cpasses=sancov-module, works on stable)
#      into target/fuzz/, so libFuzzer is guided by the library's own branches, not only by
#      the harness's;
#   2. builds the harness with clang -fsanitize=fuzzer,address,undefined against it;
#   3. runs it on a working copy of the seed corpus fuzz/corpus/ (target/fuzz-out/corpus/),
#      with crashes saved as target/fuzz-out/crash-*.
# A crash is a model violation or a sanitizer report: replay it with
#   fuzz/run.sh --replay target/fuzz-out/crash-<sha1>
# and turn it into a regression test (c-tests/test_model.c or c-tests/test_bad_input.c).
#
# Without clang's libFuzzer the harness is built with gcc as a standalone replay driver
# (-DAFUT_FUZZ_STANDALONE), which runs the seed corpus plus random inputs for SECONDS:
# no coverage guidance then (the script says so).
#
# Longer runs: fuzz/run.sh 3600 (an hour); the corpus in target/fuzz-out/corpus/ grows across
# runs. Output ends with "fuzz: N executions ...". Exit status: 0 if no crash.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/fuzz-out"
mkdir -p "$out"
STATIC_LIBS=(-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc)
host=$(rustc -vV | sed -n 's/^host: //p')

have_libfuzzer() {
    command -v clang >/dev/null 2>&1 || return 1
    local t
    t=$(mktemp -d)
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}\n' >"$t/t.c"
    clang -fsanitize=fuzzer "$t/t.c" -o "$t/t" >/dev/null 2>&1
    local rc=$?
    rm -rf "$t"
    return $rc
}

build_lib() {
    echo "fuzz: building libafut.a with coverage instrumentation (target/fuzz)" >&2
    (cd "$root" && CARGO_TARGET_DIR="$root/target/fuzz" \
        RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares" \
        cargo build --release --lib --target "$host" --quiet)
    echo "$root/target/fuzz/$host/release/libafut.a"
}

build_plain_lib() {
    (cd "$root" && cargo build --release --lib --quiet)
    echo "$root/target/release/libafut.a"
}

if [ "${1:-}" = "--replay" ]; then
    shift
    lib=$(build_plain_lib)
    gcc -std=c11 -O1 -g -pthread -DAFUT_FUZZ_STANDALONE -I"$root/include" -I"$root/c-tests" \
        "$root/fuzz/fuzz_model.c" "$lib" "${STATIC_LIBS[@]}" -o "$out/fuzz_replay"
    exec "$out/fuzz_replay" "$@"
fi

secs=${1:-30}
mkdir -p "$out/corpus"
cp -n "$root"/fuzz/corpus/* "$out/corpus/" 2>/dev/null || true

if have_libfuzzer; then
    lib=$(build_lib)
    clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$root/include" -I"$root/c-tests" "$root/fuzz/fuzz_model.c" "$lib" "${STATIC_LIBS[@]}" \
        -o "$out/fuzz_model"
    echo "fuzz: libFuzzer for ${secs}s (corpus $out/corpus)" >&2
    set +e
    start=$SECONDS
    (cd "$out" && ASAN_OPTIONS=detect_leaks=1 ./fuzz_model -max_total_time="$secs" -max_len=4096 \
        -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/" \
        "$out/corpus") >"$out/fuzz.log" 2>&1
    rc=$?
    took=$((SECONDS - start))
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/fuzz.log" | tail -1 || true)
    corpus=$(ls "$out/corpus" | wc -l)
    crashes=$(ls "$out" | grep -c '^crash-\|^leak-\|^timeout-\|^oom-' || true)
    cov=$(grep -o 'cov: [0-9]*' "$out/fuzz.log" | tail -1 | sed 's/cov: //' || true)
    if [ "$rc" -ne 0 ]; then
        tail -40 "$out/fuzz.log" >&2
    fi
    echo "fuzz: ${execs:-0} executions in ${took} s (libFuzzer, coverage-guided, ASan+UBSan), corpus ${corpus} inputs, coverage ${cov:-?} edges, ${crashes} crashes (exit ${rc})"
    exit "$rc"
else
    echo "fuzz: clang's libFuzzer is not available: standalone replay driver with random inputs, no coverage guidance" >&2
    lib=$(build_plain_lib)
    gcc -std=c11 -O1 -g -pthread -DAFUT_FUZZ_STANDALONE -I"$root/include" -I"$root/c-tests" \
        "$root/fuzz/fuzz_model.c" "$lib" "${STATIC_LIBS[@]}" -o "$out/fuzz_replay"
    "$out/fuzz_replay" "$out/corpus" >/dev/null
    execs=$(ls "$out/corpus" | wc -l)
    end=$((SECONDS + secs))
    while [ $SECONDS -lt $end ]; do
        head -c $((64 + RANDOM % 4000)) /dev/urandom >"$out/random-input"
        if ! "$out/fuzz_replay" "$out/random-input" >/dev/null; then
            cp "$out/random-input" "$out/crash-random-$(date +%s)"
            echo "fuzz: ${execs} executions, 1 crash (saved in $out)"
            exit 1
        fi
        execs=$((execs + 1))
    done
    echo "fuzz: ${execs} executions in ${secs} s (standalone replay of random inputs, no coverage guidance), 0 crashes"
fi
