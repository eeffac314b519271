#!/usr/bin/env bash
# Framework overhead on CPU: a gpt small enough that its kernels cost little, trained on one
# batch held in memory, 1 thread. retort's step (bench/step_bench.cpp --model gpt) with its own
# autocast (amp::Autocast, casts made by retort's op wrappers), the same step under LibTorch's
# dispatcher-level autocast (--autocast libtorch: the policy torch.autocast applies), and
# PyTorch's twin (bench/reference/lm_train.py --fixed-batch) under torch.autocast; and all in
# fp32. PyTorch runs with retort's malloc preloaded (bench/malloc_env.sh), so the allocator
# is not what differs. Each run a fresh process, alternating over REPS rounds; the best ms per
# step of each. Then one profiled run of each (LibTorch's profiler, torch.profiler): ops per
# step, casts per step, and the ops of most self time.
#   [DIM=64 DEPTH=2 HEADS=2 CONTEXT=64 BATCH=4 STEPS=300 REPS=3] bench/overhead_bench.sh [build_dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
dim=${DIM:-64} depth=${DEPTH:-2} heads=${HEADS:-2} context=${CONTEXT:-64} batch=${BATCH:-4}
steps=${STEPS:-300}
reps=${REPS:-3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
read -ra same_malloc <<<"$("$root/bench/malloc_env.sh")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
shape=(--dim "$dim" --heads "$heads" --context "$context" --batch "$batch" --steps "$steps")

run() {  # impl amp [--profile]: one JSON line
  local impl=$1 amp=$2; shift 2
  case $impl in
    retort) "$build/bench/step_bench" --model gpt --depth "$depth" "${shape[@]}" --threads 1 --warmup 20 --amp "$amp" \
              --grad-clip 1 "$@" ;;
    libtorch) "$build/bench/step_bench" --model gpt --depth "$depth" "${shape[@]}" --threads 1 --warmup 20 --amp "$amp" \
                --grad-clip 1 --autocast libtorch "$@" ;;
    pytorch) (cd "$root/bench/reference" && env "${same_malloc[@]}" /usr/bin/python3 lm_train.py - \
                --layers "$depth" "${shape[@]}" --threads 1 --warmup 20 --fixed-batch --amp "$amp" "$@") ;;
  esac
}
cells=("retort off" "pytorch off" "retort autocast" "libtorch autocast" "pytorch autocast")
for _ in $(seq "$reps"); do
  for c in "${cells[@]}"; do
    read -r impl amp <<<"$c"
    out=$(run "$impl" "$amp")
    echo "$impl $amp $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ms_per_step"])' "$out")" >> "$tmp/times"
  done
done
for c in "${cells[@]}"; do
  read -r impl amp <<<"$c"
  out=$(run "$impl" "$amp" --profile)
  echo "$impl $amp $out" >> "$tmp/profiles"
done
python3 - "$tmp/times" "$tmp/profiles" "$dim" "$depth" "$heads" "$context" "$batch" <<'PY'
import json, sys
times, profiles = sys.argv[1], sys.argv[2]
dim, depth, heads, context, batch = sys.argv[3:]
best = {}
for line in open(times):
    impl, amp, ms = line.split()
    best[(impl, amp)] = min(best.get((impl, amp), 1e9), float(ms))
print(f"gpt dim {dim}, depth {depth}, heads {heads}, context {context}, batch {batch}; 1 thread; best ms per step\n")
print("| precision | retort | retort, LibTorch's autocast | PyTorch (same malloc) | retort / PyTorch time |")
print("|---|---|---|---|---|")
print(f"| fp32 | {best['retort', 'off']:.3f} | | {best['pytorch', 'off']:.3f} | {best['retort', 'off'] / best['pytorch', 'off']:.2f} |")
r, l, p = best['retort', 'autocast'], best['libtorch', 'autocast'], best['pytorch', 'autocast']
print(f"| bf16 autocast | {r:.3f} | {l:.3f} | {p:.3f} | {r / p:.2f} |")
print("\n| run (profiled) | ops per step | casts per step (aten::_to_copy) | forward ms (outside ops) | self ms per step: the top 5 ops |")
print("|---|---|---|---|---|")
for line in open(profiles):
    impl, amp, js = line.split(" ", 2)
    j = json.loads(js)
    top = ", ".join(f"{name} {ms:.3f}" for name, ms, calls in j["top_ops"][:5])
    fwd = j.get("phases", {}).get("forward")
    fwd = f"{fwd[0]:.3f} ({fwd[1]:.3f})" if fwd else ""
    print(f"| {impl} {amp} | {j['ops_per_step']:.0f} | {j['casts_per_step']:.0f} | {fwd} | {top} |")
PY
