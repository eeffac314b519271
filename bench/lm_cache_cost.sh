#!/usr/bin/env bash
# The step of language-model distillation from a teacher cache against the live teacher:
# the same recipe, blocks and steps, tokens/s (median of the logged windows after the first)
# from the live teacher and from caches of each top-K and dtype; also the time to make each
# cache and its size.
#   bench/lm_cache_cost.sh <teacher run dir> [build_dir]
#   STEPS=60 CACHES="0:fp32 32:bf16" OUT=<dir> EXTRA="<overrides for every run>"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
teacher=$(cd "${1:?usage: bench/lm_cache_cost.sh <teacher run dir> [build_dir]}" && pwd)
build=${2:-$root/build}
steps=${STEPS:-60}
caches=${CACHES:-0:fp32 32:bf16}
out=${OUT:-$root/outputs/lm-cache-cost/$(date +%Y-%m-%d_%H-%M-%S)}
mkdir -p "$out"
cd "$root"
recipe="recipes/text/lm_distill.yaml distill.teacher.checkpoint=$teacher data.windows=blocks trainer.eval=false \
  trainer.checkpoint_every=0 trainer.log_every=10 trainer.max_steps=$steps ${EXTRA:-}"

median_tokens_per_s() {
  python3 - "$1/metrics.jsonl" <<'PY'
import json, statistics, sys
rates = [r["tokens_per_s"] for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "train"][1:]
print(f"{statistics.median(rates):.0f}")
PY
}

# shellcheck disable=SC2086
"$build/retort" train $recipe run.dir="$out/live" > "$out/live.log" 2>&1
live=$(median_tokens_per_s "$out/live")
echo "| teacher outputs | tokens/s | vs live | cache: made in | size |"
echo "|---|---|---|---|---|"
echo "| live teacher (its forward every step) | $live | 1.00x | | |"
for c in $caches; do
  k=${c%%:*} dtype=${c##*:}
  dir=$out/cache-$k-$dtype
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  [ -f "$dir/cache.json" ] || "$build/retort" cache-teacher $recipe distill.cache.dir="$dir" distill.cache.top_k="$k" \
    distill.cache.dtype="$dtype" > "$dir.log" 2>&1
  made=$(python3 -c "print(f'{$(date +%s.%N) - $start:.0f} s')")
  # shellcheck disable=SC2086
  "$build/retort" train $recipe distill.cache.dir="$dir" distill.cache.top_k="$k" distill.cache.dtype="$dtype" \
    run.dir="$out/from-cache-$k-$dtype" > "$out/from-cache-$k-$dtype.log" 2>&1
  rate=$(median_tokens_per_s "$out/from-cache-$k-$dtype")
  size=$(du -sh "$dir" | cut -f1)
  python3 -c "print(f'| cache, top_k $k ({\"whole vocabulary\" if $k == 0 else \"ids kept\"}), $dtype | $rate | {$rate / $live:.2f}x | $made | $size |')"
done
echo "runs: $out"
