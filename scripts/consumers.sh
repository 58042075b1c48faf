#!/usr/bin/env bash
# Builds and runs a tiny afut program (tests/consumers/main.c) every way a user
# would build it, and checks each result:
#
#   build    cmake + cargo build of afut into build/consumers/afut (cached between runs)
#   lto      one build, one artefact: CMake's libafut.a and that of the README's plain
#            `cargo build --release` (target/release) are both LTO builds (one Rust object,
#            no std-/core-/dependency objects), and the two shared libraries have the same
#            exports and the same .text size
#   install  cmake --install into a fresh prefix: header, libs and links, CMake package, afut.pc
#   strip    cmake --install --strip into another prefix: no debug sections left, the same
#            exports, smaller files (sizes printed), and programs that link and run against it
#   (a)      find_package(afut CONFIG REQUIRED) against the prefix: shared (default),
#            static (BUILD_SHARED_LIBS=OFF), afut::afut_static, C++, and a moved prefix
#   (b)      add_subdirectory(afut) from a parent project (install/tests off there)
#   (c)      pkg-config + plain cc: shared, static (pkg-config --static), static by hand
#   (d)      the C suite built in the same tree and run by ctest, against both flavours
#
# Closes with "N passed, N failed"; exits non-zero on any failure.
#
#   scripts/consumers.sh            # incremental: reuses build/consumers/afut
#   scripts/consumers.sh --clean    # start from an empty build/consumers
#
# Environment: AFUT_CONSUMERS_DIR (default build/consumers), AFUT_JOBS (default 2).
# cmake and pkg-config are installed when missing (scripts/install-deps.sh).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${AFUT_CONSUMERS_DIR:-$ROOT/build/consumers}
JOBS=${AFUT_JOBS:-2}
export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-$JOBS}
CONSUMERS=$ROOT/tests/consumers

case "${1:-}" in
    --clean) rm -rf "$OUT" ;;
    "") ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "consumers.sh: unknown argument: $1" >&2; exit 2 ;;
esac

# --- tools -------------------------------------------------------------------
if ! command -v cmake >/dev/null 2>&1 || ! command -v pkg-config >/dev/null 2>&1; then
    echo "consumers: cmake or pkg-config missing; installing"
    if [ -x "$ROOT/scripts/install-deps.sh" ]; then
        "$ROOT/scripts/install-deps.sh" || { echo "consumers: install-deps.sh failed" >&2; exit 1; }
    elif command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake pkg-config >/dev/null \
            || { echo "consumers: apt-get install cmake pkg-config failed" >&2; exit 1; }
    else
        echo "consumers: install cmake and pkg-config first" >&2
        exit 1
    fi
fi
for tool in cmake ctest pkg-config cc c++ readelf nm ar size; do
    command -v "$tool" >/dev/null 2>&1 || { echo "consumers: $tool not found" >&2; exit 1; }
done

# --- bookkeeping -------------------------------------------------------------
mkdir -p "$OUT/logs"
passed=0
failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

# step NAME CMD...: runs CMD with its output in logs/NAME.log; on failure shows the tail.
step() {
    local name=$1 log="$OUT/logs/$1.log"
    shift
    if "$@" >"$log" 2>&1; then
        return 0
    fi
    echo "--- $name failed: $* (last lines of $log)"
    tail -n 40 "$log" | sed 's/^/    /'
    return 1
}

# check_run NAME EXE [shared|static]: runs EXE, which must print "consumer ok <version>"
# and exit 0; then checks that it depends on libafut.so.<soname> (shared) or not (static).
check_run() {
    local name=$1 exe=$2 flavour=${3:-}
    local out rc
    if [ ! -x "$exe" ]; then
        fail "$name: $exe was not built"
        return
    fi
    out=$("$exe" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || ! grep -qx "consumer ok $VERSION" <<<"$out"; then
        fail "$name: exit $rc, output: $out"
        return
    fi
    local needed
    needed=$(readelf -d "$exe" | grep '(NEEDED)' || true)
    case $flavour in
        shared)
            if ! grep -qF "[$SONAME]" <<<"$needed"; then
                fail "$name: does not depend on $SONAME: $needed"
                return
            fi ;;
        static)
            if grep -q 'libafut' <<<"$needed"; then
                fail "$name: static build depends on a shared libafut: $needed"
                return
            fi ;;
    esac
    pass "$name${flavour:+ ($flavour)}: $out"
}

# The version and SONAME the build must produce, by the rule in cmake/afutVersion.cmake.
eval "$(cmake -P "$ROOT/cmake/afutVersion.cmake" | sed -n 's/^\(version\|soname\|realname\)=\(.*\)$/\U\1\E=\2/p')"
echo "consumers: afut $VERSION, SONAME $SONAME, in $OUT"

# --- build -------------------------------------------------------------------
BUILD=$OUT/afut
built=0
if step configure cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAFUT_BUILD_TESTS=ON \
    && step build cmake --build "$BUILD" --target afut_cargo; then
    built=1
    pass "build: cmake --build --target afut_cargo (cargo build --profile release)"
else
    fail "build: configure or build of afut failed"
fi

# The build tree: real file, SONAME link, dev link, static library, SONAME inside.
if [ $built -eq 1 ]; then
    lib=$BUILD/lib
    actual_soname=$(readelf -d "$lib/$REALNAME" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
    if [ -f "$lib/$REALNAME" ] && [ "$(readlink "$lib/$SONAME")" = "$REALNAME" ] \
        && [ "$(readlink "$lib/libafut.so")" = "$SONAME" ] && [ -f "$lib/libafut.a" ] \
        && [ "$actual_soname" = "$SONAME" ]; then
        pass "build tree: libafut.so -> $SONAME -> $REALNAME (SONAME $actual_soname), libafut.a"
    else
        fail "build tree: library files or SONAME wrong: $(ls -l "$lib" 2>&1 | tr '\n' ' ') soname=$actual_soname"
    fi
fi

# --- one build, one artefact -----------------------------------------------------
# rust_members ARCHIVE: the archive's Rust objects (*.rcgu.o) other than compiler_builtins',
# which rustc never puts through LTO. Fat LTO merges every crate into afut's own object(s);
# without LTO there is one object per crate (std-..., core-..., parking_lot-..., ...).
rust_members() { ar t "$1" | grep '\.rcgu\.o$' | grep -v '^compiler_builtins-'; }
check_lto() { # check_lto NAME ARCHIVE
    local members others
    if ! members=$(rust_members "$2") || [ -z "$members" ]; then
        fail "lto: $1: no Rust objects in $2"
        return 1
    fi
    others=$(grep -v '^afut\.' <<<"$members" | head -5 | tr '\n' ' ')
    if [ -n "$others" ]; then
        fail "lto: $1 is not an LTO build: $2 has objects of other crates: $others"
        return 1
    fi
    return 0
}
text_size() { size -A "$1" | awk '$1 == ".text" { print $2 }'; }
if [ $built -eq 1 ]; then
    # The README's build, in cargo's own target directory (scripts/test.sh's examples stage
    # has usually built it already).
    CARGO_OUT=${CARGO_TARGET_DIR:-target}
    case $CARGO_OUT in /*) ;; *) CARGO_OUT=$ROOT/$CARGO_OUT ;; esac
    CARGO_OUT=$CARGO_OUT/release
    if step cargo-release bash -c 'cd "$1" && cargo build --release' _ "$ROOT"; then
        cmake_so=$lib/$REALNAME cargo_so=$CARGO_OUT/libafut.so
        if check_lto "CMake's build" "$lib/libafut.a" && check_lto "cargo build --release" "$CARGO_OUT/libafut.a"; then
            cmake_text=$(text_size "$cmake_so") cargo_text=$(text_size "$cargo_so")
            if [ -z "$cmake_text" ] || [ "$cmake_text" != "$cargo_text" ]; then
                fail "lto: .text of $cmake_so is ${cmake_text:-?} bytes, of $cargo_so ${cargo_text:-?}"
            elif ! cmp -s <(nm -D --defined-only "$cmake_so" | awk '{ print $3 }') \
                          <(nm -D --defined-only "$cargo_so" | awk '{ print $3 }'); then
                fail "lto: $cmake_so and $cargo_so export different symbols"
            else
                pass "lto: CMake's and cargo build --release's libraries are one LTO build (.text $cargo_text bytes; libafut.so $(stat -c %s "$cargo_so") bytes, libafut.a $(stat -c %s "$CARGO_OUT/libafut.a") bytes; $(rust_members "$CARGO_OUT/libafut.a" | wc -l) Rust object in the archive)"
            fi
        fi
    else
        fail "lto: cargo build --release failed"
    fi
fi

# --- install -----------------------------------------------------------------
PREFIX=$OUT/prefix
installed=0
if [ $built -eq 1 ]; then
    rm -rf "$PREFIX"
    if step install cmake --install "$BUILD" --prefix "$PREFIX"; then
        libdir=$(dirname "$(find "$PREFIX" -name "$REALNAME" | head -n 1)")
        pc=$(find "$PREFIX" -name afut.pc | head -n 1)
        problems=""
        [ -f "$PREFIX/include/afut.h" ] || problems+=" no include/afut.h;"
        [ -f "$PREFIX/include/afut.hpp" ] || problems+=" no include/afut.hpp;"
        [ -f "$libdir/$REALNAME" ] || problems+=" no $REALNAME;"
        [ "$(readlink "$libdir/$SONAME" 2>/dev/null)" = "$REALNAME" ] || problems+=" $SONAME is not a link to $REALNAME;"
        [ "$(readlink "$libdir/libafut.so" 2>/dev/null)" = "$SONAME" ] || problems+=" libafut.so is not a link to $SONAME;"
        [ -f "$libdir/libafut.a" ] || problems+=" no libafut.a;"
        [ -f "$libdir/cmake/afut/afutConfig.cmake" ] || problems+=" no afutConfig.cmake;"
        [ -f "$libdir/cmake/afut/afutConfigVersion.cmake" ] || problems+=" no afutConfigVersion.cmake;"
        [ -n "$pc" ] && grep -qx "prefix=$PREFIX" "$pc" || problems+=" afut.pc missing or its prefix is not $PREFIX;"
        if [ -z "$problems" ]; then
            installed=1
            pass "install: header, $REALNAME + links, libafut.a, CMake package, afut.pc under $PREFIX"
        else
            fail "install:$problems"
        fi
    else
        fail "install: cmake --install failed"
    fi
fi

# --- stripped install ----------------------------------------------------------
# exports FILE: the dynamic symbols FILE defines, sorted.
exports() { nm -D --defined-only "$1" | awk '{print $NF}' | sort; }
if [ $installed -eq 1 ]; then
    STRIPPED=$OUT/prefix-stripped
    rm -rf "$STRIPPED"
    if step install-strip cmake --install "$BUILD" --prefix "$STRIPPED" --strip; then
        s_libdir=$(dirname "$(find "$STRIPPED" -name "$REALNAME" | head -n 1)")
        so_full=$(stat -c %s "$libdir/$REALNAME")
        so_small=$(stat -c %s "$s_libdir/$REALNAME" 2>/dev/null || echo 0)
        a_full=$(stat -c %s "$libdir/libafut.a")
        a_small=$(stat -c %s "$s_libdir/libafut.a" 2>/dev/null || echo 0)
        problems=""
        readelf -S "$s_libdir/$REALNAME" 2>&1 | grep -q '\.debug_' && problems+=" $REALNAME keeps .debug_* sections;"
        readelf -S "$s_libdir/libafut.a" 2>&1 | grep -q '\.debug_' && problems+=" libafut.a keeps .debug_* sections;"
        readelf -S "$libdir/$REALNAME" 2>&1 | grep -q '\.debug_' || problems+=" the plain install has no debug info to strip (Cargo.toml's release profile);"
        [ "$so_small" -gt 0 ] && [ "$so_small" -lt "$so_full" ] || problems+=" $REALNAME not smaller ($so_small vs $so_full bytes);"
        [ "$a_small" -gt 0 ] && [ "$a_small" -lt "$a_full" ] || problems+=" libafut.a not smaller ($a_small vs $a_full bytes);"
        [ "$(exports "$s_libdir/$REALNAME")" = "$(exports "$libdir/$REALNAME")" ] || problems+=" the stripped library exports other symbols;"
        [ "$(readlink "$s_libdir/$SONAME" 2>/dev/null)" = "$REALNAME" ] || problems+=" $SONAME is not a link to $REALNAME;"
        if [ -z "$problems" ]; then
            pass "install --strip: $REALNAME $so_full -> $so_small bytes, libafut.a $a_full -> $a_small bytes, no debug sections, same exports"
        else
            fail "install --strip:$problems"
        fi
        mkdir -p "$OUT/stripped"
        if step stripped-shared cc -o "$OUT/stripped/consumer" "$CONSUMERS/main.c" -I"$STRIPPED/include" \
                -L"$s_libdir" -lafut -Wl,-rpath,"$s_libdir"; then
            check_run "stripped install, shared" "$OUT/stripped/consumer" shared
        else
            fail "stripped install, shared: compile failed"
        fi
        if step stripped-static cc -o "$OUT/stripped/consumer_static" "$CONSUMERS/main.c" -I"$STRIPPED/include" \
                "$s_libdir/libafut.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc; then
            check_run "stripped install, static" "$OUT/stripped/consumer_static" static
        else
            fail "stripped install, static: compile failed"
        fi
    else
        fail "install --strip: cmake --install --strip failed"
    fi
fi

# --- (a) find_package ---------------------------------------------------------
# find_consumer NAME PREFIX [cmake args...]: configures and builds tests/consumers/find_package.
find_consumer() {
    local name=$1 prefix=$2
    shift 2
    rm -rf "$OUT/$name"
    step "$name-configure" cmake -S "$CONSUMERS/find_package" -B "$OUT/$name" \
        -DCMAKE_PREFIX_PATH="$prefix" "$@" \
        && step "$name-build" cmake --build "$OUT/$name"
}
if [ $installed -eq 1 ]; then
    WANTED=${VERSION%.*}                          # MAJOR.MINOR
    if find_consumer find-shared "$PREFIX" -DAFUT_WANTED_VERSION="$WANTED"; then
        check_run "find_package afut::afut" "$OUT/find-shared/consumer" shared
        check_run "find_package afut::afut from C++" "$OUT/find-shared/consumer_cxx" shared
        check_run "find_package afut::afut_static" "$OUT/find-shared/consumer_static" static
    else
        fail "find_package (shared): configure or build failed"
    fi
    if find_consumer find-static "$PREFIX" -DBUILD_SHARED_LIBS=OFF; then
        check_run "find_package afut::afut with BUILD_SHARED_LIBS=OFF" "$OUT/find-static/consumer" static
        check_run "find_package afut::afut from C++ with BUILD_SHARED_LIBS=OFF" "$OUT/find-static/consumer_cxx" static
    else
        fail "find_package (BUILD_SHARED_LIBS=OFF): configure or build failed"
    fi
    # Relocatable: a copy of the prefix somewhere else works on its own.
    MOVED=$OUT/prefix-moved
    rm -rf "$MOVED"
    cp -a "$PREFIX" "$MOVED"
    if find_consumer find-moved "$MOVED"; then
        runpath=$(readelf -d "$OUT/find-moved/consumer" | grep -E '\((RUNPATH|RPATH)\)' || true)
        if grep -qF "$MOVED/" <<<"$runpath" && ! grep -qF "$PREFIX/" <<<"$runpath"; then
            check_run "find_package from a moved prefix" "$OUT/find-moved/consumer" shared
        else
            fail "find_package from a moved prefix: links the original prefix: $runpath"
        fi
    else
        fail "find_package from a moved prefix: configure or build failed"
    fi
    # Versions: 0.x releases are compatible within a minor version, later ones within a
    # major version (the SONAME rule); asking for the next one must fail.
    major=${VERSION%%.*}
    minor=${WANTED#*.}
    if [ "$major" -eq 0 ]; then next="0.$((minor + 1))"; else next="$((major + 1)).0"; fi
    rm -rf "$OUT/find-next"
    if cmake -S "$CONSUMERS/find_package" -B "$OUT/find-next" -DCMAKE_PREFIX_PATH="$PREFIX" \
            -DAFUT_WANTED_VERSION="$next" >"$OUT/logs/find-next.log" 2>&1; then
        fail "find_package(afut $next) accepted version $VERSION"
    elif grep -q "afutConfig.cmake, version: $VERSION" "$OUT/logs/find-next.log"; then
        pass "find_package(afut $next) rejects $VERSION"
    else
        fail "find_package(afut $next) failed for another reason: see $OUT/logs/find-next.log"
    fi
fi

# --- (b) add_subdirectory -----------------------------------------------------
# Shares the cargo target dir of the build above, so cargo has nothing to do.
if [ $built -eq 1 ]; then
    SUB=$OUT/subdir
    if step subdir-configure cmake -S "$CONSUMERS/add_subdirectory" -B "$SUB" \
            -DAFUT_SOURCE_DIR="$ROOT" -DAFUT_CARGO_TARGET_DIR="$BUILD/cargo" \
        && step subdir-build cmake --build "$SUB"; then
        check_run "add_subdirectory afut::afut" "$SUB/consumer" shared
        check_run "add_subdirectory afut::afut_static" "$SUB/consumer_static" static
        rm -rf "$OUT/subdir-prefix"
        if step subdir-install cmake --install "$SUB" --prefix "$OUT/subdir-prefix"; then
            extra=$(cd "$OUT/subdir-prefix" && find . -type f -o -type l | grep -v '^./bin/consumer' || true)
            if [ -z "$extra" ]; then
                pass "add_subdirectory: installing the parent installs none of afut's files"
            else
                fail "add_subdirectory: the parent's install also installed: $extra"
            fi
        else
            fail "add_subdirectory: cmake --install of the parent failed"
        fi
    else
        fail "add_subdirectory: configure or build failed"
    fi
fi

# --- (c) pkg-config + cc -------------------------------------------------------
if [ $installed -eq 1 ]; then
    PC_OUT=$OUT/pkg-config
    rm -rf "$PC_OUT"
    mkdir -p "$PC_OUT"
    export PKG_CONFIG_PATH
    PKG_CONFIG_PATH=$(dirname "$pc")
    modversion=$(pkg-config --modversion afut 2>&1)
    if [ "$modversion" = "$VERSION" ]; then
        pass "pkg-config --modversion afut: $modversion"
    else
        fail "pkg-config --modversion afut: '$modversion', expected $VERSION"
    fi
    pc_libdir=$(pkg-config --variable=libdir afut)
    # Shared: the usual one-liner, plus an rpath because the prefix is not a system one.
    # shellcheck disable=SC2046
    if step pc-shared cc -std=c99 -Wall -Wextra -Wpedantic -Werror -o "$PC_OUT/consumer" \
            "$CONSUMERS/main.c" $(pkg-config --cflags --libs afut) -Wl,-rpath,"$pc_libdir"; then
        check_run "pkg-config + cc" "$PC_OUT/consumer" shared
    else
        fail "pkg-config + cc (shared): compile failed"
    fi
    # Static: --static adds Libs.private; -l:libafut.a makes the linker take the archive
    # although libafut.so sits next to it.
    static_libs=$(pkg-config --static --libs afut)
    # shellcheck disable=SC2046,SC2086
    if step pc-static cc -std=c99 -Wall -Wextra -Wpedantic -Werror -o "$PC_OUT/consumer_static" \
            "$CONSUMERS/main.c" $(pkg-config --cflags afut) ${static_libs/-lafut/-l:libafut.a}; then
        check_run "pkg-config --static + cc" "$PC_OUT/consumer_static" static
    else
        fail "pkg-config --static + cc: compile failed (libs: $static_libs)"
    fi
    # Static by hand, as the README shows it: the archive and the system libraries.
    if step hand-static cc -o "$PC_OUT/consumer_by_hand" "$CONSUMERS/main.c" -I"$PREFIX/include" \
            "$pc_libdir/libafut.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc; then
        check_run "static by hand (libafut.a + system libs)" "$PC_OUT/consumer_by_hand" static
    else
        fail "static by hand: compile failed"
    fi
fi

# --- (d) ctest ----------------------------------------------------------------
if [ $built -eq 1 ]; then
    # The C suite's programs are built here, so a broken test does not hide the consumers.
    rm -f "$OUT/logs/ctest.log"
    if step build-c-suite cmake --build "$BUILD" \
        && step ctest ctest --test-dir "$BUILD" --output-on-failure --no-tests=error -j "$JOBS"; then
        pass "ctest: $(grep -E 'tests passed' "$OUT/logs/ctest.log")"
    else
        fail "ctest: $(grep -shE 'tests passed|No tests' "$OUT/logs/ctest.log" || echo 'the C suite did not build')"
    fi
fi

echo "consumers: logs in $OUT/logs"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
