#!/usr/bin/env bash
# Configures and builds retort (Release) into ${BUILD_DIR:-build}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
jobs=${JOBS:-$(nproc)}
fuzz=OFF
command -v clang++ >/dev/null 2>&1 && fuzz=ON   # libFuzzer targets of config/ (short runs in ctest)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRETORT_FUZZ=$fuzz "$@"
cmake --build "$build" -j "$jobs"
