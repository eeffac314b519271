#!/usr/bin/env bash
# retort's memory settings (glibc tuned as core/malloc.h does + the caching CPU allocator of
# trainer/cpu_allocator.h) against the allocators PyTorch's CPU users preload, on three
# workloads, each run a fresh process, the allocators interleaved over REPS rounds:
#   step     bench/step_bench: the teacher's training step (cnn_large, AdamW, batch 256),
#            fp32 and bf16 autocast
#   distill  `retort train recipes/fmnist/distill.yaml` for STEPS steps (teacher forward +
#            student step), samples/s from its last progress line
#   report   `retort report` of the teacher run (test-set forwards, no gradients)
# Allocators: retort (the default), glibc (RETORT_MALLOC=system: LibTorch's own allocator,
# glibc's defaults), and with RETORT_MALLOC=system + LD_PRELOAD: jemalloc (defaults),
# jemalloc-tuned (the MALLOC_CONF Intel recommends for PyTorch on CPU), mimalloc, tcmalloc.
#   bench/malloc_compare.sh <teacher run dir> [build_dir] [threads]
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
allocators=(retort glibc jemalloc jemalloc-tuned mimalloc tcmalloc)

# Runs "$@" under the allocator $1 with GNU time; appends "workload allocator seconds rss_kb".
measure() {
  local workload=$1 alloc=$2; shift 2
  local env=(env)
  case $alloc in
    retort) ;;
    glibc) env+=(RETORT_MALLOC=system) ;;
    jemalloc) env+=(RETORT_MALLOC=system LD_PRELOAD=$lib/libjemalloc.so.2) ;;
    jemalloc-tuned) env+=(RETORT_MALLOC=system LD_PRELOAD=$lib/libjemalloc.so.2
      MALLOC_CONF=oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1) ;;
    mimalloc) env+=(RETORT_MALLOC=system LD_PRELOAD=$lib/libmimalloc.so.2) ;;
    tcmalloc) env+=(RETORT_MALLOC=system LD_PRELOAD=$lib/libtcmalloc_minimal.so.4) ;;
  esac
  local out
  out=$(cd "$root" && "${env[@]}" /usr/bin/time -f "RSS_KB %M WALL %e" "$@" 2>&1)
  local rss wall seconds
  rss=$(sed -n 's/^RSS_KB \([0-9]*\) WALL.*/\1/p' <<<"$out")
  wall=$(sed -n 's/^RSS_KB [0-9]* WALL \([0-9.]*\)/\1/p' <<<"$out")
  case $workload in
    step-*) seconds=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ms_per_step'] / 1000)" \
                        "$(grep '^{' <<<"$out" | tail -1)") ;;
    distill) seconds=$(python3 -c "print(1 / $(sed -n 's/.* \([0-9.]*\) samples\/s.*/\1/p' <<<"$out" | tail -1))") ;;
    report) seconds=$wall ;;
  esac
  echo "$workload $alloc $seconds $rss" >> "$tmp/raw"
}

for _ in $(seq "$reps"); do
  for alloc in "${allocators[@]}"; do
    for amp in off autocast; do
      step_alloc=malloc; [[ $alloc == retort ]] && step_alloc=retort
      measure "step-$amp" "$alloc" "$build/bench/step_bench" --batch 256 --threads "$threads" --steps 12 --warmup 3 \
        --amp "$amp" --allocator "$step_alloc"
    done
    measure distill "$alloc" "$build/retort" train recipes/fmnist/distill.yaml distill.teacher.checkpoint="$teacher" \
      trainer.max_steps="$steps" trainer.threads="$threads" trainer.eval=false trainer.progress=plain \
      trainer.checkpoint_every=1000000 run.dir="$tmp/distill-$alloc"
    measure report "$alloc" "$build/retort" report "$teacher" --threads "$threads" --out "$tmp/report-$alloc"
  done
done

python3 - "$tmp/raw" "${allocators[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
allocs = sys.argv[2:]
what = {"step-off": "step fp32 (s/step)", "step-autocast": "step bf16 autocast (s/step)",
        "distill": "distillation (s/sample)", "report": "report (s)"}
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
