#!/usr/bin/env bash
# retort's caching CPU allocator (trainer/cpu_allocator.h) vs LibTorch's own (glibc malloc,
# tuned as core/malloc.h does): the teacher's training step (cnn_large, AdamW) per amp mode
# and batch, each run a fresh process, the two allocators alternating over REPS rounds.
#   bench/allocator_bench.sh [build_dir] [threads] ["batches"] ["modes"]
# Prints a markdown table: best ms/step, median max RSS (and its range over the rounds) and
# median page faults per timed step of each allocator, and retort's ratios to malloc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
batches=${3:-256 512}
modes=${4:-off autocast master}
reps=${REPS:-3}
steps=${STEPS:-12}
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
for _ in $(seq "$reps"); do
  for batch in $batches; do
    for mode in $modes; do
      for alloc in malloc retort; do
        "$build/bench/step_bench" --batch "$batch" --threads "$threads" --steps "$steps" --warmup 3 \
          --amp "$mode" --allocator "$alloc" >> "$raw"
      done
    done
  done
done
python3 - "$raw" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
name = {"off": "fp32", "autocast": "bf16 autocast", "master": "bf16 master weights"}
print("| batch | mode | ms/step malloc | ms/step retort | speed | max RSS malloc, MiB (range) | max RSS retort, MiB (range) | RSS ratio | faults/step malloc | faults/step retort |")
print("|---|---|---|---|---|---|---|---|---|---|")
keys = []
for r in runs:
    if (r["batch"], r["amp"]) not in keys: keys.append((r["batch"], r["amp"]))
for batch, mode in keys:
    m = [r for r in runs if (r["batch"], r["amp"], r["allocator"]) == (batch, mode, "malloc")]
    c = [r for r in runs if (r["batch"], r["amp"], r["allocator"]) == (batch, mode, "retort")]
    ms_m, ms_c = min(r["ms_per_step"] for r in m), min(r["ms_per_step"] for r in c)
    rss_m, rss_c = statistics.median(r["max_rss_mb"] for r in m), statistics.median(r["max_rss_mb"] for r in c)
    span = lambda rs: f'{min(r["max_rss_mb"] for r in rs):.0f}-{max(r["max_rss_mb"] for r in rs):.0f}'
    f_m, f_c = statistics.median(r["faults_per_step"] for r in m), statistics.median(r["faults_per_step"] for r in c)
    print(f"| {batch} | {name[mode]} | {ms_m:.1f} | {ms_c:.1f} | {ms_m/ms_c:.2f}x | {rss_m:.0f} ({span(m)}) | {rss_c:.0f} ({span(c)}) | {rss_c/rss_m:.2f} | {f_m:.0f} | {f_c:.0f} |")
PY
