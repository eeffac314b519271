#!/usr/bin/env bash
# retort's malloc (jemalloc linked in, tuned by core/malloc_conf.cpp) against the other
# allocators PyTorch's CPU users preload, on four workloads, each run a fresh process, the
# allocators interleaved over REPS rounds:
#   step     bench/step_bench: the teacher's training step (cnn_large, AdamW, batch 256),
#            fp32 and bf16 autocast
#   distill  `retort train recipes/fmnist/distill.yaml` for STEPS steps (teacher forward +
#            student step), samples/s from its last progress line
#   report   `retort report` of the teacher run (test-set forwards, no gradients)
#   lm       `retort train recipes/text/lm_teacher.yaml` for 20 steps, tokens/s of the last
#            10 (needs outputs/data/fortunes-bytes: `retort tokenize`, README)
# Allocators: retort (as shipped), jemalloc (its default settings, through MALLOC_CONF),
# mimalloc and tcmalloc (LD_PRELOAD). BASELINE=<build dir of an older retort> adds that
# build as it ran ("baseline") and with RETORT_MALLOC=system ("baseline-system"): retort
# before jemalloc had its own caching allocator, and that switch gave glibc's defaults.
#   [BASELINE=dir] bench/malloc_compare.sh <teacher run dir> [build_dir] [threads]
# Prints one markdown table: per workload and allocator, the best time (lower is better)
# and the median max RSS (GNU time), and both as ratios to retort's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
teacher=${1:?usage: bench/malloc_compare.sh <teacher run dir> [build_dir] [threads]}
build=${2:-$root/build}
threads=${3:-2}
reps=${REPS:-3}
steps=${STEPS:-150}
lib=/usr/lib/x86_64-linux-gnu
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
allocators=(retort jemalloc mimalloc tcmalloc)
[[ -n ${BASELINE:-} ]] && allocators+=(baseline baseline-system)
jemalloc_defaults=oversize_threshold:8388608,background_thread:false,metadata_thp:disabled,dirty_decay_ms:10000,muzzy_decay_ms:0

# Runs the workload $1 under the allocator $2 with GNU time; appends "workload allocator
# seconds rss_kb". The remaining arguments are the command, with @BUILD@ for the build dir.
measure() {
  local workload=$1 alloc=$2; shift 2
  local env=(env) dir=$build
  case $alloc in
    jemalloc) env+=(MALLOC_CONF=$jemalloc_defaults) ;;
    mimalloc) env+=(LD_PRELOAD=$lib/libmimalloc.so.2) ;;
    tcmalloc) env+=(LD_PRELOAD=$lib/libtcmalloc_minimal.so.4) ;;
    baseline) dir=$BASELINE ;;
    baseline-system) dir=$BASELINE; env+=(RETORT_MALLOC=system) ;;
  esac
  local cmd=("${@//@BUILD@/$dir}") out
  if ! out=$(cd "$root" && "${env[@]}" /usr/bin/time -f "RSS_KB %M WALL %e" "${cmd[@]}" 2>&1); then
    echo "malloc_compare: $workload under $alloc failed: ${cmd[*]}" >&2
    tail -5 <<<"$out" >&2
    exit 1
  fi
  local rss wall seconds
  rss=$(sed -n 's/^RSS_KB \([0-9]*\) WALL.*/\1/p' <<<"$out")
  wall=$(sed -n 's/^RSS_KB [0-9]* WALL \([0-9.]*\)/\1/p' <<<"$out")
  case $workload in
    step-*) seconds=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ms_per_step'] / 1000)" \
                        "$(grep '^{' <<<"$out" | tail -1)") ;;
    distill) seconds=$(python3 -c "print(1 / $(sed -n 's/.* \([0-9.]*\) samples\/s.*/\1/p' <<<"$out" | tail -1))") ;;
    report) seconds=$wall ;;
    lm) seconds=$(python3 -c "import json,sys
rs = [json.loads(l) for l in open(sys.argv[1]) if '\"tokens_per_s\"' in l]
print(1 / rs[-1]['tokens_per_s'])" "$tmp/lm-$alloc/metrics.jsonl") ;;
  esac
  echo "$workload $alloc $seconds $rss" >> "$tmp/raw"
}

for _ in $(seq "$reps"); do
  for alloc in "${allocators[@]}"; do
    for amp in off autocast; do
      measure "step-$amp" "$alloc" @BUILD@/bench/step_bench --batch 256 --threads "$threads" --steps 12 --warmup 3 --amp "$amp"
    done
    rm -rf "$tmp/distill-$alloc" "$tmp/lm-$alloc"  # each round trains afresh
    measure distill "$alloc" @BUILD@/retort train recipes/fmnist/distill.yaml distill.teacher.checkpoint="$teacher" \
      trainer.max_steps="$steps" trainer.threads="$threads" trainer.eval=false trainer.progress=plain \
      trainer.checkpoint_every=1000000 run.dir="$tmp/distill-$alloc"
    measure report "$alloc" @BUILD@/retort report "$teacher" --threads "$threads" --out "$tmp/report-$alloc"
    measure lm "$alloc" @BUILD@/retort train recipes/text/lm_teacher.yaml trainer.max_steps=20 trainer.log_every=10 \
      model.dropout=0 trainer.threads="$threads" trainer.eval=false trainer.progress=off \
      trainer.checkpoint_every=1000000 run.dir="$tmp/lm-$alloc"
  done
done

python3 - "$tmp/raw" "${allocators[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
allocs = sys.argv[2:]
what = {"step-off": "step fp32 (s/step)", "step-autocast": "step bf16 autocast (s/step)",
        "distill": "distillation (s/sample)", "report": "report (s)", "lm": "lm_teacher (s/token)"}
print("| workload | " + " | ".join(allocs) + " |")
print("|---|" + "---|" * len(allocs))
for w in what:
    t = {a: min(float(r[2]) for r in rows if r[0] == w and r[1] == a) for a in allocs}
    m = {a: statistics.median(int(r[3]) for r in rows if r[0] == w and r[1] == a) / 1024 for a in allocs}
    cells = [f"{t[a] / t['retort']:.2f}x time, {m[a] / m['retort']:.2f}x RSS ({m[a]:.0f} MiB)" for a in allocs]
    print(f"| {what[w]} | " + " | ".join(cells) + " |")
print()
print("Absolute, retort: " + ", ".join(
    f"{what[w]} {min(float(r[2]) for r in rows if r[0] == w and r[1] == 'retort'):.4g}" for w in what))
PY
