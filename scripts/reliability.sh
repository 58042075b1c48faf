#!/usr/bin/env bash
# The reliability run: the C suite under AddressSanitizer+UBSan and valgrind, the
# multi-thread tests under ThreadSanitizer, and a bounded fuzz run; then the figures.
#
#   scripts/reliability.sh                 everything (fuzz for 20 s)
#   AFUT_FUZZ_SECONDS=300 scripts/reliability.sh
#
# Steps (each one logged in target/reliability/<step>.log):
#   plain      cargo test --test c_suite (plain build), then the model test, the
#              level-triggered soak and the bad-input matrix once more to read their figures
#   asan       AFUT_C_SANITIZE=address,undefined cargo test --test c_suite
#   valgrind   AFUT_C_VALGRIND=1 cargo test --test c_suite   (memcheck, definite leaks fail)
#   tsan-<t>   AFUT_C_SANITIZE=thread AFUT_C_FILTER=<t> cargo test --test c_suite, for each
#              multi-thread program present: test_threads, test_stress, test_host_fd,
#              test_model (its thread phase), test_watchers, test_executor (workers,
#              shutdown races), test_virtual_time (submissions waking an auto-advance loop)
#   tsan-rust-instrumented   only with AFUT_TSAN_RUST=1: the same programs under TSan with
#              libafut itself instrumented (RUSTC_BOOTSTRAP=1 -Zsanitizer=thread; see below)
#   fuzz       fuzz/run.sh $AFUT_FUZZ_SECONDS (libFuzzer; a gcc replay driver without clang)
#
# ThreadSanitizer sees only the C side: the Rust library is not instrumented (that needs
# -Zsanitizer, a nightly flag), so TSan cannot see the happens-before edges made by the
# library's own locks (parking_lot futexes). tsan.supp holds the suppressions this needs,
# if any; see the note in the summary.
#
# Other processes running the C suite in the same target directory at the same time (it
# rebuilds target/debug/deps/c-tests-*) make both fail: on a shared machine, give this run
# its own CARGO_TARGET_DIR.
#
# The summary is printed at the end and written to target/reliability-summary.md. The exit
# status is non-zero if any step failed; the closing line is "N passed, N failed" (steps).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
logs="$root/target/reliability"
mkdir -p "$logs"
summary="$root/target/reliability-summary.md"
fuzz_secs=${AFUT_FUZZ_SECONDS:-20}

passed=0
failed=0
rows=()

# step NAME FIGURES-FUNCTION COMMAND...: runs COMMAND, logs it, records the outcome.
step() {
    local name=$1 figures=$2
    shift 2
    local log="$logs/$name.log" start=$SECONDS rc
    echo "=== $name: $*" >&2
    "$@" >"$log" 2>&1
    rc=$?
    local took=$((SECONDS - start))
    local result=ok
    if [ $rc -ne 0 ]; then
        result="FAILED (exit $rc)"
        failed=$((failed + 1))
        echo "--- $name failed; last lines of $log:" >&2
        grep -E 'FAIL|failed|ERROR|error:|VIOLATION|WARNING: ThreadSanitizer|Invalid|definitely' "$log" | head -20 >&2
    else
        passed=$((passed + 1))
    fi
    local fig=""
    [ -n "$figures" ] && fig=$($figures "$log")
    echo "=== $name: $result in ${took} s${fig:+ — $fig}" >&2
    rows+=("| $name | $result | ${took} s | $fig |")
}

# "C suite (Shared): 57 passed, 0 failed" lines from c_suite.rs.
suite_figures() {
    local log=$1 s n
    s=$(grep -h '^C suite (' "$log" | sed 's/^C suite //' | paste -sd ';' - | sed 's/;/; /g')
    n=$(grep -c '^test_[a-z0-9_]*\.c (Shared): ' "$log" || true)
    printf '%s (%s programs)' "${s:-no result}" "$n"
}

plain_figures() {
    suite_figures "$1"
    local m b
    m=$(sed -n 's/^model: \([0-9]*\) calls tried.*/\1/p' "$logs/model.out" 2>/dev/null | tail -1)
    b=$(sed -n 's/^bad inputs covered: \([0-9]*\) rows.*/\1/p' "$logs/bad_input.out" 2>/dev/null | tail -1)
    printf '; model: %s calls; bad-input matrix: %s rows' "${m:-?}" "${b:-?}"
}

fuzz_figures() {
    sed -n 's/^fuzz: \([0-9]* executions.*\)/\1/p' "$1" | tail -1
}

tsan_figures() {
    local n
    n=$(grep -c 'WARNING: ThreadSanitizer' "$1" || true)
    suite_figures "$1"
    printf '; %s TSan reports' "$n"
}

# 1. Plain run (also builds the suite), then the figures of the model and the matrix.
plain() {
    cargo test --test c_suite -- --nocapture
    local rc=$? dir
    dir=$(ls -d "${CARGO_TARGET_DIR:-$root/target}"/debug/deps/c-tests-shared 2>/dev/null)
    if [ -n "$dir" ] && [ -x "$dir/test_model-shared" ]; then
        "$dir/test_model-shared" >"$logs/model.out" 2>&1 || rc=1
        cat "$logs/model.out"
    fi
    if [ -n "$dir" ] && [ -x "$dir/test_soak_level-shared" ]; then
        "$dir/test_soak_level-shared" >"$logs/soak_level.out" 2>&1 || rc=1
        cat "$logs/soak_level.out"
    fi
    if [ -n "$dir" ] && [ -x "$dir/test_bad_input-shared" ]; then
        "$dir/test_bad_input-shared" >"$logs/bad_input.out" 2>&1 || rc=1
        cat "$logs/bad_input.out"
    fi
    return $rc
}
step plain plain_figures plain

# 2. AddressSanitizer + UndefinedBehaviorSanitizer (C side), whole suite.
step asan-ubsan suite_figures env AFUT_C_SANITIZE=address,undefined \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    cargo test --test c_suite -- --nocapture

# 3. valgrind memcheck, whole suite.
if command -v valgrind >/dev/null 2>&1; then
    step valgrind suite_figures env AFUT_C_VALGRIND=1 cargo test --test c_suite -- --nocapture
else
    rows+=("| valgrind | FAILED (valgrind not installed: scripts/install-deps.sh) | | |")
    failed=$((failed + 1))
fi

# 4. ThreadSanitizer on the multi-thread programs that exist.
tsan_supp="$root/scripts/tsan.supp"
tsan_opts="halt_on_error=0:second_deadlock_stack=1"
[ -f "$tsan_supp" ] && tsan_opts="$tsan_opts:suppressions=$tsan_supp"
for t in test_threads test_stress test_host_fd test_model test_watchers test_executor test_virtual_time; do
    if [ -f "c-tests/$t.c" ]; then
        # exitcode: TSan's own (66) makes the program, hence the suite, fail on any report.
        step "tsan-$t" tsan_figures env AFUT_C_SANITIZE=thread AFUT_C_FILTER="$t" \
            TSAN_OPTIONS="$tsan_opts" cargo test --test c_suite -- --nocapture
    fi
done

# 4b. Optional: ThreadSanitizer with the library instrumented too (AFUT_TSAN_RUST=1). Builds
# afut and its dependencies with -Zsanitizer=thread through RUSTC_BOOTSTRAP=1 (a stable
# toolchain's escape hatch for nightly flags; std stays uninstrumented: no rust-src for
# -Zbuild-std), links the multi-thread programs against that libafut.a with gcc's TSan, and
# runs them with scripts/tsan-rust.supp (Arc's fence, see there).
tsan_rust() {
    local host t rc=0 lib dir="$logs/tsan-rust"
    host=$(rustc -vV | sed -n 's/^host: //p')
    mkdir -p "$dir"
    RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$root/target/tsan" \
        RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer" \
        cargo build --lib --target "$host" --quiet || return 1
    lib="$root/target/tsan/$host/debug/libafut.a"
    # LLVM emits __tsan_memcpy/memmove/memset, which gcc 12's libtsan lacks: forward them
    # to the intercepted libc functions.
    cat >"$dir/shim.c" <<'SHIM'
#include <string.h>
void *__tsan_memcpy(void *d, const void *s, size_t n) { return memcpy(d, s, n); }
void *__tsan_memmove(void *d, const void *s, size_t n) { return memmove(d, s, n); }
void *__tsan_memset(void *d, int c, size_t n) { return memset(d, c, n); }
SHIM
    for t in test_threads test_stress test_host_fd test_model test_watchers test_executor test_virtual_time; do
        [ -f "c-tests/$t.c" ] || continue
        gcc -std=c11 -pthread -O1 -g -fsanitize=thread -Iinclude -Ic-tests "c-tests/$t.c" \
            "$dir/shim.c" "$lib" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o "$dir/$t" || { rc=1; continue; }
        if TSAN_OPTIONS="halt_on_error=0:suppressions=$root/scripts/tsan-rust.supp" \
            AFUT_UNDER_VALGRIND=0 "$dir/$t" >"$dir/$t.out" 2>&1; then
            echo "$t: $(tail -1 "$dir/$t.out"), $(grep -c 'WARNING: ThreadSanitizer' "$dir/$t.out") TSan reports"
        else
            rc=1
            echo "$t: FAILED: $(tail -1 "$dir/$t.out"), $(grep -c 'WARNING: ThreadSanitizer' "$dir/$t.out") TSan reports"
            grep -A30 'WARNING: ThreadSanitizer' "$dir/$t.out" | head -60
        fi
    done
    return $rc
}
tsan_rust_figures() {
    grep -E '^test_[a-z_]*: ' "$1" | sed 's/^\(test_[a-z_]*\): \(.*\)/\1 \2/' | paste -sd ';' - | sed 's/;/; /g'
}
if [ "${AFUT_TSAN_RUST:-0}" = "1" ]; then
    step tsan-rust-instrumented tsan_rust_figures tsan_rust
fi

# 5. Fuzzing, bounded.
step fuzz fuzz_figures bash fuzz/run.sh "$fuzz_secs"

# Summary.
{
    echo "# afut reliability run"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(git -C "$root" diff --quiet 2>/dev/null || echo '(uncommitted changes)')"
    echo
    echo "| step | result | time | figures |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    m=$(sed -n 's/^model: \([0-9]* calls tried.*\)/\1/p' "$logs/model.out" 2>/dev/null | tail -1)
    s=$(sed -n 's/^model: \([0-9]* callbacks ran.*\)/\1/p' "$logs/model.out" 2>/dev/null | tail -1)
    r=$(sed -n 's/^model: \([0-9]* calls, .*host-fd checks.*\)/\1/p' "$logs/model.out" 2>/dev/null | tail -1)
    k=$(sed -n 's/^ *\(host idle (0.5 s): .*\)/\1/p' "$logs/soak_level.out" 2>/dev/null | tail -1)
    b=$(sed -n 's/^bad inputs covered: \(.*\)/\1/p' "$logs/bad_input.out" 2>/dev/null | tail -1)
    f=$(fuzz_figures "$logs/fuzz.log")
    sanitizer_ok=0
    sanitizer_all=0
    for r in "${rows[@]}"; do
        case "$r" in
        "| asan"* | "| valgrind"* | "| tsan"*)
            sanitizer_all=$((sanitizer_all + 1))
            case "$r" in *"| ok |"*) sanitizer_ok=$((sanitizer_ok + 1)) ;; esac
            ;;
        esac
    done
    echo "- Model-based random test: ${m:-not run} (${s:-})"
    echo "- Model, the classes of issue 10: ${r:-not run}"
    echo "- Level-triggered soak (poll() host), once idle: ${k:-not run}"
    echo "- Bad-input matrix: ${b:-not run}"
    echo "- Fuzzing: ${f:-not run}"
    echo "- Sanitizer runs passed: $sanitizer_ok of $sanitizer_all (ASan+UBSan and valgrind on the whole C suite, TSan on the multi-thread programs)"
    echo
    echo "Notes: sanitizers instrument the C side; the Rust library is checked through its effects"
    echo "(ASan/valgrind see its heap through malloc/free). TSan on the C side ignores the library's"
    echo "own malloc/free (scripts/tsan.supp: it cannot see the library's locks); the optional"
    echo "AFUT_TSAN_RUST=1 step instruments the library too (scripts/tsan-rust.supp: Arc's fence only)."
    echo
    echo "$passed passed, $failed failed"
} >"$summary"
echo >&2
cat "$summary"
[ "$failed" -eq 0 ]
