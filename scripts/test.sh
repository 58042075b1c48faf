#!/usr/bin/env bash
# Runs every afut test: the README's test command, and what .ci/run calls.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    lint and cargo test only (Rust unit tests, header drift, C suite,
#                              packaging)
#
# Stages: system packages (installed when missing), lint (rustfmt, clippy), cargo test, the
# C suite again on the poll() backend, the core's unit tests under Miri, the loom model checks
# of the lock-free core, the C suite under AddressSanitizer+UBSan, valgrind and ThreadSanitizer,
# the model/fuzz runs, the examples (each checks its own output), and the CMake / pkg-config
# consumer builds.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

passed=0
failed=0
failed_names=()
stage() {
    local name=$1
    shift
    echo
    echo "=== stage: $name"
    local start=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "=== stage $name: ok ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        echo "=== stage $name: FAILED ($((SECONDS - start)) s)"
    fi
}

if [ $quick = 0 ]; then
    stage install-deps bash scripts/install-deps.sh
fi
# rustfmt and clippy keep the tree as rustfmt.toml and the lints say (warnings are errors).
stage lint bash -c 'cargo fmt --check && cargo clippy --all-targets -- -D warnings'
stage cargo-test cargo test --all-targets
if [ $quick = 0 ]; then
    # The poller's other path: polling's poll() backend (what platforms whose poller has no fd
    # of its own run, with the host fd's relay thread), forced on Linux. The library's unit
    # tests and the whole C suite again, in a target directory of their own so that neither
    # build invalidates the other.
    stage poll-backend env RUSTFLAGS="--cfg polling_test_poll_backend" CARGO_TARGET_DIR=target/poll-backend \
        AFUT_TEST_POLL_BACKEND=1 \
        cargo test --lib --test c_suite
    # The non-Linux code paths (kqueue, pipes, no timerfd) type-checked for FreeBSD and macOS,
    # warnings as errors (cargo check needs only the targets' standard library, which rustup
    # adds when missing; no cross linker: nothing is linked or run).
    stage cross-check bash -c 'for t in x86_64-unknown-freebsd x86_64-apple-darwin; do
        rustup target list --installed | grep -qx "$t" || rustup target add "$t" || exit 1
        RUSTFLAGS="-D warnings" CARGO_TARGET_DIR=target/cross cargo check --lib --target "$t" || exit 1
    done'
    # The unit tests in src/ under Miri (undefined behaviour, data races, leaks). Those that
    # make system calls Miri cannot run (epoll, eventfd, timerfd) are marked
    # #[cfg_attr(miri, ignore)]. Needs the nightly miri component (install-deps.sh).
    stage miri cargo +nightly miri test --lib
    # The model checker over the real lock-free core (src/futures/loom_tests.rs,
    # src/runtime/loom_tests.rs): every interleaving loom explores of the future's state word,
    # the queues and the wakeup flag; then the deliberately broken variant, which loom must
    # catch. Each build has its own target directory (RUSTFLAGS change every artefact).
    stage loom env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
        cargo test --lib --release loom_ -- --test-threads=1 --nocapture
    stage loom-catches-broken env RUSTFLAGS="--cfg loom --cfg afut_loom_broken" CARGO_TARGET_DIR=target/loom-broken \
        cargo test --lib --release loom_catches_the_broken_variant -- --test-threads=1 --nocapture
fi
if [ $quick = 0 ]; then
    # AFUT_TSAN_RUST=1: the ThreadSanitizer runs also use a TSan-instrumented build of the
    # library itself (a test-only build; see scripts/reliability.sh).
    stage reliability env AFUT_TSAN_RUST=1 bash scripts/reliability.sh
    # 20,000 random scenarios run in CPython 3.13's asyncio and in afut, compared event by
    # event (tests/differential/); a fresh seed each run, printed.
    stage differential bash scripts/differential.sh 20000
    stage examples bash scripts/examples.sh
    stage consumers bash scripts/consumers.sh
fi

echo
if [ $failed -gt 0 ]; then
    echo "failed stages: ${failed_names[*]}"
fi
echo "stages: $passed passed, $failed failed"
[ $failed -eq 0 ]
