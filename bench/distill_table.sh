#!/usr/bin/env bash
# Distillation accuracy over seeds: the student trained alone (baseline) and distilled from
# a trained teacher, same recipe steps, JOBS runs at a time (1 thread each), then a table
# of every seed's final test accuracy, the means and the gain.
#   bench/distill_table.sh <teacher run dir> [cnn|vit] [build_dir]
#   SEEDS="0 1 2" JOBS=2 OUT=<dir> EXTRA="<overrides for every run>"
# The runs stay in OUT (default outputs/distill-table/<pair>_<date>_<time>) for
# `retort report <teacher> OUT/student-s0 OUT/distill-s0`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
teacher=$(cd "${1:?usage: bench/distill_table.sh <teacher run dir> [cnn|vit] [build_dir]}" && pwd)
pair=${2:-cnn}
build=${3:-$root/build}
seeds=${SEEDS:-0 1 2}
jobs=${JOBS:-2}
out=${OUT:-$root/outputs/distill-table/${pair}_$(date +%Y-%m-%d_%H-%M-%S)}
case $pair in
  cnn) student=recipes/fmnist/student.yaml; distill=recipes/fmnist/distill.yaml ;;
  vit) student=recipes/fmnist/transformer_student.yaml; distill=recipes/fmnist/transformer_distill.yaml ;;
  *) echo "pair must be cnn or vit, got '$pair'" >&2; exit 2 ;;
esac
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cd "$root"
for s in $seeds; do
  echo "$build/retort train $student trainer.seed=$s trainer.threads=1 trainer.progress=plain ${EXTRA:-} run.dir=$out/student-s$s"
  echo "$build/retort train $distill trainer.seed=$s trainer.threads=1 trainer.progress=plain ${EXTRA:-} distill.teacher.checkpoint=$teacher run.dir=$out/distill-s$s"
done > "$out/commands.txt"
# Each run logs to its own run directory; a failed run fails the table.
xargs -P "$jobs" -I{} sh -c '{} > /dev/null 2>&1 || { echo "failed: {}" >&2; exit 255; }' < "$out/commands.txt"

final() { grep '"kind":"eval"' "$1/metrics.jsonl" | tail -1 | python3 -c 'import json,sys; print(100*json.load(sys.stdin)["accuracy"])'; }
t=$(final "$teacher")
echo "| seed | teacher | student alone | distilled | gain |" | tee "$out/table.md"
echo "|---|---|---|---|---|" | tee -a "$out/table.md"
sum_b=0; sum_d=0; n=0
for s in $seeds; do
  b=$(final "$out/student-s$s"); d=$(final "$out/distill-s$s")
  python3 -c "print(f'| $s | {$t:.2f} % | {$b:.2f} % | {$d:.2f} % | {$d-$b:+.2f} |')" | tee -a "$out/table.md"
  sum_b=$(python3 -c "print($sum_b + $b)"); sum_d=$(python3 -c "print($sum_d + $d)"); n=$((n + 1))
done
python3 -c "b=$sum_b/$n; d=$sum_d/$n; print(f'| mean | {$t:.2f} % | {b:.2f} % | {d:.2f} % | {d-b:+.2f} |')" | tee -a "$out/table.md"
echo "runs: $out"
