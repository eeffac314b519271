#!/usr/bin/env bash
# The cost of a distillation step vs a plain student step (same student, data, batch,
# threads; the teacher's forward and the distillation terms are the overhead), through
# `retort train` with a fixed number of steps and no evaluation, alternating, best of REPS.
#   bench/distill_cost.sh <teacher run dir> [build_dir] [threads] [steps]
# Pairs: the CNN (recipes/fmnist/student.yaml vs distill.yaml) and, when a second teacher
# is given as VIT_TEACHER=<run dir>, the Transformer pair.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
teacher=${1:?usage: bench/distill_cost.sh <teacher run dir> [build_dir] [threads] [steps]}
build=${2:-$root/build}
threads=${3:-2}
steps=${4:-300}
reps=${REPS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
common="trainer.max_steps=$steps trainer.threads=$threads trainer.eval=false trainer.progress=plain trainer.checkpoint_every=1000000"
rate() { sed -n 's/.*done: .* (\([0-9.]*\) samples\/s).*/\1/p' | tail -1; }
pairs=("cnn recipes/fmnist/student.yaml recipes/fmnist/distill.yaml $teacher")
[[ -n ${VIT_TEACHER:-} ]] && pairs+=("vit recipes/fmnist/transformer_student.yaml recipes/fmnist/transformer_distill.yaml $VIT_TEACHER")
echo "| pair | threads | student step (samples/s) | distillation step (samples/s) | distillation / student step time |"
echo "|---|---|---|---|---|"
for pair in "${pairs[@]}"; do
  read -r name student distill t <<<"$pair"
  best_s=0; best_d=0
  for i in $(seq "$reps"); do
    s=$(cd "$root" && "$build/retort" train "$student" $common run.dir="$tmp/$name-s-$i" 2>&1 | rate)
    d=$(cd "$root" && "$build/retort" train "$distill" $common distill.teacher.checkpoint="$t" run.dir="$tmp/$name-d-$i" 2>&1 | rate)
    best_s=$(python3 -c "print(max($best_s, $s))"); best_d=$(python3 -c "print(max($best_d, $d))")
  done
  python3 -c "print(f'| $name | $threads | {$best_s:.0f} | {$best_d:.0f} | {$best_s/$best_d:.2f}x |')"
done
