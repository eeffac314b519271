#!/usr/bin/env bash
# Prints the environment that gives another program retort's malloc (jemalloc with the
# settings of core/malloc_conf.cpp), for like-for-like baselines:
#   env $(bench/malloc_env.sh) /usr/bin/python3 bench/reference/train_step.py ...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
conf=$(sed -n 's/^ *"\(.*\)";$/\1/p' "$root/core/malloc_conf.cpp")
[[ -n $conf ]] || { echo "malloc_env: no settings found in core/malloc_conf.cpp" >&2; exit 1; }
echo "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=$conf"
