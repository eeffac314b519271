#!/usr/bin/env bash
# Everything from a fresh Debian 12 machine to a passing test suite: install
# dependencies, build, run every test (unit, multi-rank through mpirun, end to end,
# fuzzing, CUDA compile check). .ci/run calls this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir "${BUILD_DIR:-$root/build}" --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
