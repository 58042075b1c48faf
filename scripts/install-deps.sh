#!/usr/bin/env bash
# Install the Debian packages that afut's host-loop examples and checks need,
# only those that are missing.
#
#   scripts/install-deps.sh            # install what is missing
#   scripts/install-deps.sh --check    # only report; exit 1 if something is missing
#
#   libuv1-dev      examples/libuv_host.c   (pkg-config libuv)
#   libglib2.0-dev  examples/glib_host.c    (pkg-config glib-2.0)
#   pkg-config      to find the two above
#   cmake           building a C consumer with CMake
#   valgrind        leak checks of the C tests and examples
#   clang, libclang-rt-14-dev   the libFuzzer run of fuzz/run.sh (scripts/reliability.sh)
#
# and, through rustup (not apt), the nightly toolchain's miri and rust-src components, for
# `cargo +nightly miri test --lib` (the unit tests of the core under Miri, scripts/test.sh).
#
# Works as root on a fresh Debian 12 (no sudo needed) and, for a non-root user,
# through sudo when it is available. When everything is present it makes no
# network access and returns at once.
set -euo pipefail

PACKAGES=(libuv1-dev libglib2.0-dev pkg-config cmake valgrind clang libclang-rt-14-dev)

check_only=0
case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-deps: unknown argument: $1" >&2; exit 2 ;;
esac

is_installed() {
    # "install ok installed" only for a fully installed package (not "config-files", ...).
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if is_installed "$pkg"; then
        echo "install-deps: $pkg: already installed"
    else
        missing+=("$pkg")
    fi
done

# Miri: a rustup component of the nightly toolchain (cargo miri also needs rust-src).
miri_ok() { cargo +nightly miri --version >/dev/null 2>&1; }
miri_status=0
if miri_ok; then
    echo "install-deps: miri (nightly): already installed"
elif [ "$check_only" -eq 1 ]; then
    echo "install-deps: missing: the nightly toolchain's miri component" >&2
    miri_status=1
elif ! command -v rustup >/dev/null 2>&1; then
    echo "install-deps: rustup not found; install the nightly toolchain with miri and rust-src by hand" >&2
    miri_status=1
else
    echo "install-deps: rustup toolchain install nightly (miri, rust-src)"
    if rustup toolchain install nightly --profile minimal --component miri,rust-src >/dev/null && miri_ok; then
        echo "install-deps: miri (nightly): installed"
    else
        echo "install-deps: miri (nightly): FAILED to install" >&2
        miri_status=1
    fi
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: nothing else to do"
    exit "$miri_status"
fi

if [ "$check_only" -eq 1 ]; then
    echo "install-deps: missing: ${missing[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: apt-get not found; install these by hand: ${missing[*]}" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-deps: not root and no sudo; install these by hand: ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Wait (up to 5 min) for another apt/dpkg run to release its lock instead of failing.
APT=("${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300)
echo "install-deps: apt-get update"
"${APT[@]}" update -qq
echo "install-deps: installing: ${missing[*]}"
"${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

failed=0
for pkg in "${missing[@]}"; do
    if is_installed "$pkg"; then
        echo "install-deps: $pkg: installed"
    else
        echo "install-deps: $pkg: FAILED to install" >&2
        failed=1
    fi
done
[ "$miri_status" -eq 0 ] || failed=1
exit "$failed"
