#!/usr/bin/env bash
# Mixed precision on CPU: the teacher's training step (cnn_large, batch 256, AdamW) in
# fp32, bf16 autocast and bf16 master weights, each mode in a fresh process, alternating
# over REPS rounds (best step time, peak memory of the first round: it does not vary).
#   bench/amp_bench.sh [build_dir] [threads] [batch]
# Prints a markdown table; ratios are against fp32 from the same run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
batch=${3:-256}
reps=${REPS:-3}
steps=${STEPS:-20}
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
declare -A best_ms max_rss step_peak
for _ in $(seq "$reps"); do
  for mode in off autocast master; do
    out=$("$build/bench/step_bench" --batch "$batch" --threads "$threads" --steps "$steps" --warmup 3 --amp "$mode")
    read -r ms rss peak < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["ms_per_step"], j["max_rss_mb"], j["step_peak_mb"])' "$out")
    if [[ -z "${best_ms[$mode]:-}" ]] || python3 -c "import sys; sys.exit(0 if $ms < ${best_ms[$mode]} else 1)"; then best_ms[$mode]=$ms; fi
    : "${max_rss[$mode]:=$rss}" "${step_peak[$mode]:=$peak}"
  done
done
echo "| mode | ms/step | speed vs fp32 | max RSS (MiB) | vs fp32 | step peak over setup (MiB) | vs fp32 |"
echo "|---|---|---|---|---|---|---|"
for mode in off autocast master; do
  python3 - "$mode" "${best_ms[$mode]}" "${max_rss[$mode]}" "${step_peak[$mode]}" "${best_ms[off]}" "${max_rss[off]}" "${step_peak[off]}" <<'PY'
import sys
mode, ms, rss, peak, ms0, rss0, peak0 = sys.argv[1], *map(float, sys.argv[2:])
name = {"off": "fp32", "autocast": "bf16 autocast", "master": "bf16 master weights"}[mode]
print(f"| {name} | {ms:.1f} | {ms0/ms:.2f}x | {rss:.0f} | {rss/rss0:.2f} | {peak:.0f} | {peak/peak0:.2f} |")
PY
done
