#!/usr/bin/env bash
# Language-model training speed, retort vs PyTorch (Debian's python3-torch: the same
# LibTorch 1.13): `retort train recipes/text/lm_teacher.yaml` against its twin
# bench/reference/lm_train.py (same gpt, batch, context, AdamW, clipping), in fp32 and bf16
# autocast, each run a fresh process, alternating over REPS rounds so that neither gets a
# quieter machine. PyTorch runs twice: as installed (glibc malloc), and with retort's
# malloc (jemalloc preloaded with the settings of core/malloc_conf.cpp).
#   [DIM=192 DEPTH=6 HEADS=6 CONTEXT=256 BATCH=32] bench/lm_speed.sh [build_dir] [threads]
#   BASELINE=<another build dir>: its retort too, alternating with this one (a fix's before/after)
# Needs outputs/data/fortunes-bytes (README, "Language models"). Prints a markdown table:
# the best tokens/s of each over the steps after the first 5, and the ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
dim=${DIM:-192} depth=${DEPTH:-6} heads=${HEADS:-6} context=${CONTEXT:-256} batch=${BATCH:-32}
reps=${REPS:-3}
steps=${STEPS:-20}
tokens=$root/outputs/data/fortunes-bytes/train.tokens
[[ -f $tokens ]] || { echo "lm_speed: $tokens missing: build/retort tokenize /usr/share/games/fortunes outputs/data/fortunes-bytes" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
read -ra same_malloc <<<"$("$root/bench/malloc_env.sh")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One shape, as retort's overrides and as the twin's flags.
model=(model.dim="$dim" model.depth="$depth" model.heads="$heads" model.context="$context" data.batch_size="$batch")
twin=(--dim "$dim" --layers "$depth" --heads "$heads" --context "$context" --batch "$batch" --steps "$steps" --warmup 5
      --threads "$threads")

retort_run() {  # $1: amp mode, [$2: build dir]; prints tokens/s over the steps after the first 5
  rm -rf "$tmp/run"
  (cd "$root" && "${2:-$build}/retort" train recipes/text/lm_teacher.yaml "${model[@]}" model.dropout=0 amp.mode="$1" \
     trainer.max_steps=$((steps + 5)) trainer.log_every=5 trainer.threads="$threads" trainer.eval=false \
     trainer.progress=off trainer.checkpoint_every=1000000 run.dir="$tmp/run" > /dev/null)
  python3 -c "import json,sys
rs = [json.loads(l) for l in open(sys.argv[1]) if '\"tokens_per_s\"' in l]
rs = [r['tokens_per_s'] for r in rs if r['step'] > 5]
print(len(rs) / sum(1 / t for t in rs))" "$tmp/run/metrics.jsonl"
}
twin_run() {  # $1: amp mode, then env assignments
  local amp=$1; shift
  (cd "$root/bench/reference" && env "$@" /usr/bin/python3 lm_train.py "$tokens" "${twin[@]}" --amp "$amp") |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])'
}

for _ in $(seq "$reps"); do
  for amp in off autocast; do
    echo "$amp retort $(retort_run "$amp")" >> "$tmp/raw"
    [ -n "${BASELINE:-}" ] && echo "$amp baseline $(retort_run "$amp" "$BASELINE")" >> "$tmp/raw"
    echo "$amp pytorch $(twin_run "$amp")" >> "$tmp/raw"
    echo "$amp pytorch-jemalloc $(twin_run "$amp" "${same_malloc[@]}")" >> "$tmp/raw"
  done
done
python3 - "$tmp/raw" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
best = lambda amp, impl: max(float(r[2]) for r in rows if r[0] == amp and r[1] == impl)
base = any(r[1] == "baseline" for r in rows)
print("| precision | retort tokens/s | PyTorch tokens/s | ratio | PyTorch + retort's malloc | ratio |"
      + (" baseline build tokens/s | retort / baseline |" if base else ""))
print("|---|---|---|---|---|---|" + ("---|---|" if base else ""))
for amp, name in (("off", "fp32"), ("autocast", "bf16 autocast")):
    r, p, j = best(amp, "retort"), best(amp, "pytorch"), best(amp, "pytorch-jemalloc")
    b = f" {best(amp, 'baseline'):,.0f} | {r / best(amp, 'baseline'):.2f} |" if base else ""
    print(f"| {name} | {r:,.0f} | {p:,.0f} | {r / p:.2f} | {j:,.0f} | {r / j:.2f} |" + b)
PY
