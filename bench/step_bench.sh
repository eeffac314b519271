#!/usr/bin/env bash
# retort vs PyTorch (Debian's python3-torch: the same LibTorch 1.13), the same training
# step, side by side in one run, alternating so that neither gets a quieter machine.
#   bench/step_bench.sh [build_dir] [threads]
# Prints a markdown table with the ratio retort / PyTorch (samples/s). retort runs on
# jemalloc (core/malloc_conf.cpp); PyTorch is run twice: as installed (glibc malloc), and
# with retort's malloc preloaded (bench/malloc_env.sh), so that the ratio with the same
# allocator is visible too.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
threads=${2:-1}
reps=${REPS:-3}
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
read -ra same_malloc <<<"$("$root/bench/malloc_env.sh")"
echo "| batch | threads | retort samples/s | PyTorch samples/s | ratio | PyTorch + retort's malloc | ratio |"
echo "|---|---|---|---|---|---|---|"
for batch in 32 128; do
  steps=$(( batch == 32 ? 200 : 60 ))
  best_r=0; best_p=0; best_t=0
  for _ in $(seq "$reps"); do
    r=$("$build/bench/step_bench" --batch "$batch" --threads "$threads" --steps "$steps" | python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_s"])')
    p=$(cd "$root/bench/reference" && /usr/bin/python3 train_step.py --batch "$batch" --threads "$threads" --steps "$steps" | python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_s"])')
    t=$(cd "$root/bench/reference" && env "${same_malloc[@]}" /usr/bin/python3 train_step.py --batch "$batch" --threads "$threads" --steps "$steps" | python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_s"])')
    best_r=$(python3 -c "print(max($best_r, $r))"); best_p=$(python3 -c "print(max($best_p, $p))"); best_t=$(python3 -c "print(max($best_t, $t))")
  done
  python3 -c "print(f'| $batch | $threads | {$best_r:.0f} | {$best_p:.0f} | {$best_r/$best_p:.2f} | {$best_t:.0f} | {$best_r/$best_t:.2f} |')"
done
