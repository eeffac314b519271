#!/usr/bin/env bash
# Distilling a language model, over seeds: the student alone and distilled from a trained
# teacher with each loss mix, at the same steps (so the same training tokens), each run
# evaluated at its end on the whole validation split; then a table of the validation loss,
# bits per byte and the share of the student-teacher gap that distillation closes,
# (L_alone - L_run) / (L_alone - L_teacher), means over seeds.
#   bench/lm_distill_table.sh <teacher run dir> [build_dir]
#   SEEDS="0 1 2" STEPS=600 OUT=<dir> EXTRA="<overrides for every run>"
#   MIXES="alone kl reverse_kl skew_kl gjs mse attention"   (names below; SEEDS1 seeds them once)
#   PRUNED=<retort prune output dir>  for "pruned": that model distilled (lm_prune_distill.yaml), and
#   "pruned_alone": fine-tuned without the teacher (lm_prune.yaml)
# The runs stay in OUT for `retort report <teacher> OUT/alone-s0 OUT/kl-s0 ...`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
teacher=$(cd "${1:?usage: bench/lm_distill_table.sh <teacher run dir> [build_dir]}" && pwd)
build=${2:-$root/build}
seeds=${SEEDS:-0 1 2}
steps=${STEPS:-600}
mixes=${MIXES:-alone kl}
out=${OUT:-$root/outputs/lm-distill-table/$(date +%Y-%m-%d_%H-%M-%S)}
mkdir -p "$out"
cd "$root"

# Each mix: the recipe and its distill overrides (lm_distill.yaml: ce 0.5 + kl 0.5 at T 1).
mix_args() {
  local d="recipes/text/lm_distill.yaml distill.teacher.checkpoint=$teacher"
  case $1 in
    alone) echo "recipes/text/lm_student.yaml" ;;
    kl) echo "$d" ;;
    kl_only) echo "$d distill.weights.ce=0 distill.weights.kl=1" ;;
    reverse_kl) echo "$d distill.weights.kl=0 distill.weights.reverse_kl=0.5" ;;
    skew_kl) echo "$d distill.weights.kl=0 distill.weights.skew_kl=0.5" ;;
    gjs) echo "$d distill.weights.kl=0 distill.weights.gjs=0.5" ;;
    mse) echo "$d distill.weights.mse=0.5 distill.layers=uniform" ;;
    attention) echo "$d distill.weights.attention=0.5 distill.attention_loss=kl" ;;
    pruned) echo "recipes/text/lm_prune_distill.yaml distill.teacher.checkpoint=$teacher prune.from=${PRUNED:?PRUNED=<retort prune output> for the pruned mixes}" ;;
    pruned_alone) echo "recipes/text/lm_prune.yaml prune.from=${PRUNED:?PRUNED=<retort prune output> for the pruned mixes}" ;;
    *) echo "unknown mix '$1'" >&2; exit 2 ;;
  esac
}

run() {  # mix seed
  local dir=$out/$1-s$2
  [ -f "$dir/eval.txt" ] && return 0  # done by an earlier call with the same OUT
  rm -rf "$dir"
  # shellcheck disable=SC2046
  "$build/retort" train $(mix_args "$1") trainer.seed="$2" trainer.max_steps="$steps" trainer.progress=plain \
    ${EXTRA:-} run.dir="$dir" > "$dir.log" 2>&1 || { echo "failed: $1 seed $2 ($dir.log)" >&2; tail -5 "$dir.log" >&2; exit 1; }
  "$build/retort" eval "$dir" data.eval_tokens=0 > "$dir/eval.tmp" && mv "$dir/eval.tmp" "$dir/eval.txt"  # whole or absent
}


[ -f "$out/teacher-eval.txt" ] || { "$build/retort" eval "$teacher" data.eval_tokens=0 > "$out/teacher-eval.tmp" &&
  mv "$out/teacher-eval.tmp" "$out/teacher-eval.txt"; }
for m in $mixes; do
  for s in $([ "$m" = alone ] || [ "$m" = kl ] || [ "$m" = pruned ] && echo "$seeds" || echo "${SEEDS1:-0}"); do
    echo "$(date +%H:%M:%S) $m seed $s" >&2
    run "$m" "$s"
  done
done

python3 - "$out" "$teacher" $mixes <<'PY'
import glob, os, re, statistics, sys
out, teacher, mixes = sys.argv[1], sys.argv[2], sys.argv[3:]
def read(path):
    text = open(path).read()
    return float(re.search(r"loss ([0-9.]+)", text).group(1)), float(re.search(r"bits per byte ([0-9.]+)", text).group(1))
lt, bt = read(os.path.join(out, "teacher-eval.txt"))
runs = {m: sorted(glob.glob(os.path.join(out, f"{m}-s*", "eval.txt"))) for m in mixes}
alone = {os.path.basename(os.path.dirname(p)).split("-s")[-1]: read(p)[0] for p in runs.get("alone", [])}
rows = ["| run | seeds | validation loss (nats per byte) | bits per byte | gap closed |", "|---|---|---|---|---|",
        f"| teacher | 1 | {lt:.4f} | {bt:.3f} | |"]
for m in mixes:
    vals = [(os.path.basename(os.path.dirname(p)).split("-s")[-1], *read(p)) for p in runs[m]]
    if not vals: continue
    gaps = [(alone[s] - l) / (alone[s] - lt) for s, l, _ in vals if s in alone and m != "alone"]
    gap = f"{100 * statistics.mean(gaps):.1f} %" if gaps else ""
    seeds = ",".join(s for s, _, _ in vals)
    rows.append(f"| {m} | {seeds} | {statistics.mean(l for _, l, _ in vals):.4f} | "
                f"{statistics.mean(b for _, _, b in vals):.3f} | {gap} |")
open(os.path.join(out, "table.md"), "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY
echo "runs: $out"
