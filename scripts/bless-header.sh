#!/usr/bin/env bash
# Regenerates include/afut.h from the Rust sources with the pinned cbindgen (see build.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
AFUT_BLESS_HEADER=1 cargo build --quiet
echo "include/afut.h regenerated"
