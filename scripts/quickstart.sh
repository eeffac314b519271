#!/usr/bin/env bash
# Everything from a fresh Debian 12 machine to a trained model: install dependencies,
# build, train the default recipe (a CNN on Fashion-MNIST) and print its test accuracy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "$root"
exec "${BUILD_DIR:-$root/build}/retort" train recipes/fmnist/default.yaml "$@"
