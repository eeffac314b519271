#!/usr/bin/env bash
# Distilling a language model, over seeds: the student alone and distilled from a trained
# teacher with each loss mix, at the same steps (so the same training tokens); then
# `retort report` over the teacher and every run, each evaluated on the whole validation
# split: bits per byte, parameters, tokens/s, the share of the student-teacher gap closed,
# (L_alone - L_run) / (L_alone - L_teacher), means over seeds, and a generated sample of each.
#   bench/lm_distill_table.sh <teacher run dir> [build_dir]
#   SEEDS="0 1 2" STEPS=600 JOBS=2 OUT=<dir> EXTRA="<overrides for every run>"
#   MIXES="alone kl kl_only reverse_kl skew_kl gjs mse attention kl_attention"   (names below)
#   CACHE=<retort cache-teacher dir>  the mixes of logit terms only read the teacher's outputs
#     from it instead of running the teacher (every run then trains on data.windows=blocks)
#   PRUNED=<retort prune output dir>  for "pruned": that model distilled (lm_prune_distill.yaml), and
#   "pruned_alone": fine-tuned without the teacher (lm_prune.yaml)
#   REPORT=0  the runs only (e.g. calls that each add one mix to a shared OUT)
# The runs stay in OUT; the table is OUT/report/report.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
teacher=$(cd "${1:?usage: bench/lm_distill_table.sh <teacher run dir> [build_dir]}" && pwd)
build=$(cd "${2:-$root/build}" && pwd)
seeds=${SEEDS:-0 1 2}
steps=${STEPS:-600}
jobs=${JOBS:-1}
mixes=${MIXES:-alone kl}
out=${OUT:-$root/outputs/lm-distill-table/$(date +%Y-%m-%d_%H-%M-%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
extra="${EXTRA:-} ${CACHE:+data.windows=blocks}"

# Each mix: the recipe and its distill overrides, every weight stated (lm_distill.yaml's own mix
# is kl_only). A trailing "cache" marks the mixes that can train from a teacher cache.
mix_args() {
  local d="recipes/text/lm_distill.yaml distill.teacher.checkpoint=$teacher distill.weights.ce=0 distill.weights.kl=0"
  case $1 in
    alone) echo "recipes/text/lm_student.yaml" ;;
    kl) echo "$d distill.weights.ce=0.5 distill.weights.kl=0.5 cache" ;;
    kl_only) echo "$d distill.weights.kl=1 cache" ;;
    reverse_kl) echo "$d distill.weights.reverse_kl=1 cache" ;;
    skew_kl) echo "$d distill.weights.skew_kl=1 cache" ;;
    gjs) echo "$d distill.weights.gjs=1 cache" ;;
    mse) echo "$d distill.weights.ce=0.5 distill.weights.mse=0.5 distill.layers=uniform" ;;
    attention) echo "$d distill.weights.ce=0.5 distill.weights.attention=0.5 distill.attention_loss=kl" ;;
    kl_attention) echo "$d distill.weights.kl=1 distill.weights.attention=0.5 distill.attention_loss=kl" ;;
    pruned) echo "recipes/text/lm_prune_distill.yaml distill.teacher.checkpoint=$teacher prune.from=${PRUNED:?PRUNED=<retort prune output> for the pruned mixes} cache" ;;
    pruned_alone) echo "recipes/text/lm_prune.yaml prune.from=${PRUNED:?PRUNED=<retort prune output> for the pruned mixes}" ;;
    *) echo "unknown mix '$1'" >&2; exit 2 ;;
  esac
}

run() {  # mix seed
  local dir=$out/$1-s$2 args
  [ -f "$dir.done" ] && return 0  # done by an earlier call with the same OUT
  args=$(mix_args "$1")
  case $args in *" cache") args=${args% cache}${CACHE:+ distill.cache.dir=$CACHE} ;; esac
  rm -rf "$dir"
  echo "$(date +%H:%M:%S) $1 seed $2" >&2
  # shellcheck disable=SC2086
  "$build/retort" train $args trainer.seed="$2" trainer.max_steps="$steps" trainer.progress=plain \
    $extra run.dir="$dir" > "$dir.log" 2>&1 || { echo "failed: $1 seed $2 ($dir.log)" >&2; tail -5 "$dir.log" >&2; return 1; }
  touch "$dir.done"
}

runs=()
for m in $mixes; do
  mix_args "$m" > /dev/null
  for s in $seeds; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run "$m" "$s" &
    runs+=("$out/$m-s$s")
  done
done
wait
for r in "${runs[@]}"; do [ -f "$r.done" ] || { echo "not every run finished; see the logs in $out" >&2; exit 1; }; done

[ "${REPORT:-1}" = 0 ] && exit 0
"$build/retort" report "$teacher" "${runs[@]}" data.eval_tokens=0 --threads 1 --out "$out/report" > "$out/report.log"
cat "$out/report/report.md"
