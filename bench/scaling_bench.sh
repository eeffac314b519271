#!/usr/bin/env bash
# Data-parallel scaling on this machine: 2 ranks x 1 thread vs 1 process x 1 thread, the
# same global batch (128) and steps, for the student alone and for distillation (student
# + the teacher's forward). Throughput from each run's own "done: ... samples/s" line
# (training steps only, no evaluation), alternating, best of REPS.
#   bench/scaling_bench.sh <teacher run dir> [build_dir] [steps]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
teacher=${1:?usage: bench/scaling_bench.sh <teacher run dir> [build_dir] [steps]}
build=${2:-$root/build}
steps=${3:-200}
reps=${REPS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpi=(mpirun --oversubscribe -np 2)
[[ $(id -u) == 0 ]] && mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
common="trainer.max_steps=$steps trainer.threads=1 trainer.eval=false trainer.progress=plain trainer.checkpoint_every=1000000"
rate() {  # samples/s from the done line
  sed -n 's/.*done: .* (\([0-9.]*\) samples\/s).*/\1/p' | tail -1
}
echo "| workload | 1 process x 1 thread (samples/s) | 2 ranks x 1 thread (samples/s) | speed-up |"
echo "|---|---|---|---|"
for work in student distill; do
  args="recipes/fmnist/$work.yaml $common"
  [[ $work == distill ]] && args="$args distill.teacher.checkpoint=$teacher"
  best1=0; best2=0
  for i in $(seq "$reps"); do
    r1=$(cd "$root" && "$build/retort" train $args run.dir="$tmp/$work-1-$i" 2>&1 | rate)
    r2=$(cd "$root" && "${mpi[@]}" "$build/retort" train $args run.dir="$tmp/$work-2-$i" 2>&1 | rate)
    best1=$(python3 -c "print(max($best1, $r1))"); best2=$(python3 -c "print(max($best2, $r2))")
  done
  python3 -c "print(f'| $work | {$best1:.0f} | {$best2:.0f} | {$best2/$best1:.2f}x |')"
done
