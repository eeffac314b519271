#!/usr/bin/env bash
# Mixed precision on CPU: the teacher's training step (cnn_large, batch 256, AdamW) in
# fp32, bf16 autocast and bf16 master weights, each mode in a fresh process, alternating
# over REPS rounds; jemalloc tuned as the retort program (core/malloc_conf.cpp).
#   bench/amp_bench.sh [build_dir] [threads] [batch]
# Prints a markdown table: best step time, median max RSS (range over the rounds: one
# round is not enough for a memory ratio), median step peak over setup; ratios are
# against fp32 from the same rounds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
batch=${3:-256}
reps=${REPS:-3}
steps=${STEPS:-20}
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
for _ in $(seq "$reps"); do
  for mode in off autocast master; do
    "$build/bench/step_bench" --batch "$batch" --threads "$threads" --steps "$steps" --warmup 3 --amp "$mode" >> "$raw"
  done
done
python3 - "$raw" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
name = {"off": "fp32", "autocast": "bf16 autocast", "master": "bf16 master weights"}
def agg(mode):
    rs = [r for r in runs if r["amp"] == mode]
    rss = [r["max_rss_mb"] for r in rs]
    return (min(r["ms_per_step"] for r in rs), statistics.median(rss), min(rss), max(rss),
            statistics.median(r["step_peak_mb"] for r in rs))
ms0, rss0, _, _, peak0 = agg("off")
print("| mode | ms/step | speed vs fp32 | max RSS, MiB (range) | vs fp32 | step peak over setup (MiB) | vs fp32 |")
print("|---|---|---|---|---|---|---|")
for mode in ("off", "autocast", "master"):
    ms, rss, lo, hi, peak = agg(mode)
    print(f"| {name[mode]} | {ms:.1f} | {ms0/ms:.2f}x | {rss:.0f} ({lo:.0f}-{hi:.0f}) | {rss/rss0:.2f} | {peak:.0f} | {peak/peak0:.2f} |")
PY
