#!/usr/bin/env bash
# Pruning measurements (issue 7), from a trained dense teacher:
#   structured 40 % (L1 channels) -> fine-tune distilling from the dense teacher -> compact
#   unstructured 80 % (magnitude)  -> fine-tune the same way (masks keep the zeros)
# then bench/prune_bench: test accuracy, parameters (all / nonzero), model.safetensors
# size and CPU forward latency (same threads, same batch) next to the dense teacher.
#   bench/prune_bench.sh <teacher run dir> [build_dir] [threads]
#   threads: for fine-tuning and for the second latency table (the first uses 1 thread)
#   EPOCHS=5 (fine-tuning epochs)  OUT=<dir> (default outputs/prune-bench/<date>_<time>)
#   MEASURE_ONLY=1 OUT=<dir>: skip pruning and fine-tuning, measure the runs already in OUT
#   (fine-tune while the machine is busy, measure latency when it is quiet)
# Long (two fine-tunings of cnn_large): run it on a quiet machine.
# Targets: structured 40 % fine-tuned within 1.0 point of the dense accuracy; compacted
# latency <= 0.7x dense. Unstructured 80 % buys no latency: dense kernels multiply the
# zeros like any other value (expect ~1.0x), only the accuracy after fine-tuning counts.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
teacher=${1:?usage: bench/prune_bench.sh <teacher run dir> [build_dir] [threads]}
teacher=$(cd "$teacher" && pwd)
build=${2:-$root/build}
threads=${3:-2}
epochs=${EPOCHS:-5}
out=${OUT:-$root/outputs/prune-bench/$(date +%Y-%m-%d_%H-%M-%S)}
retort=$build/retort
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
cd "$root"
mkdir -p "$out"
finetune() {  # <pruned run> <output run>
  "$retort" train recipes/fmnist/prune_finetune.yaml "prune.from=$1" "distill.teacher.checkpoint=$teacher" \
    "run.dir=$2" "trainer.max_epochs=$epochs" "trainer.threads=$threads"
}

if [[ -z ${MEASURE_ONLY:-} ]]; then
# --- structured 40 % ----------------------------------------------------------------------
"$retort" prune "$teacher" prune.method=l1_structured prune.sparsity=0.4 "run.dir=$out/s40"
finetune "$out/s40" "$out/s40-ft"
"$retort" prune "$out/s40-ft" prune.method=l1_structured prune.sparsity=0 prune.compact=true "run.dir=$out/s40-ft-compact"

# --- unstructured 80 % --------------------------------------------------------------------
"$retort" prune "$teacher" prune.method=magnitude prune.sparsity=0.8 "run.dir=$out/u80"
finetune "$out/u80" "$out/u80-ft"
fi

# --- measure ------------------------------------------------------------------------------
runs=("dense=$teacher" "s40-pruned=$out/s40" "s40-finetuned=$out/s40-ft" "s40-compact=$out/s40-ft-compact"
      "u80-pruned=$out/u80" "u80-finetuned=$out/u80-ft")
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$build/bench/prune_bench" --threads 1 --batch 256 --repeats 30 \
  --json "$out/prune_bench.json" "${runs[@]}" | tee "$out/prune_bench.md"
echo | tee -a "$out/prune_bench.md"
"$build/bench/prune_bench" --threads "$threads" --batch 256 --repeats 30 --no-accuracy \
  --json "$out/prune_bench_threads.json" "${runs[@]}" | tee -a "$out/prune_bench.md"
/usr/bin/python3 - "$out/prune_bench.json" <<'PY' | tee -a "$out/prune_bench.md"
import json, sys
runs = {r["label"]: r for r in json.load(open(sys.argv[1]))["runs"]}
d = runs["dense"]
s, c, u = runs["s40-finetuned"], runs["s40-compact"], runs["u80-finetuned"]
drop = 100 * (d["accuracy"] - s["accuracy"])
print(f"\nstructured 40 %: accuracy drop {drop:.2f} points (target <= 1.0: {'met' if drop <= 1.0 else 'NOT met'}); "
      f"compacted latency {c['latency_ratio']:.2f}x dense (target <= 0.7: {'met' if c['latency_ratio'] <= 0.7 else 'NOT met'}), "
      f"{c['params']} / {d['params']} parameters, {c['file_mb']:.2f} / {d['file_mb']:.2f} MB")
print(f"unstructured 80 %: accuracy drop {100 * (d['accuracy'] - u['accuracy']):.2f} points; "
      f"latency {u['latency_ratio']:.2f}x dense (dense kernels do not skip zeros); "
      f"{u['nonzero']} of {u['params']} parameters nonzero")
PY
