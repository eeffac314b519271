#!/usr/bin/env bash
# What data-parallel numerics cost per training step (bench/ddp_bench.cpp): sync batch norm
# vs per-rank statistics, fp32 vs bf16 gradient reduction in master mode; 2 ranks x 1 thread.
#   bench/ddp_bench.sh [build_dir] [reps]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
reps=${2:-300}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe -np 2)
[[ $(id -u) == 0 ]] && mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
out=$("${mpi[@]}" "$build/bench/ddp_bench" --reps "$reps")
python3 - "$out" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
base = j["local_bn"]["step_ms"]
rows = [("local_bn", "fp32, per-rank batch norm, nothing synchronised (baseline)"),
        ("broadcast_bn", "fp32, per-rank batch norm, rank 0's buffers broadcast (ddp.sync_batchnorm=false)"),
        ("sync_bn", "fp32, sync batch norm (ddp.sync_batchnorm=true, the default)"),
        ("sync_bn_compute", "fp32, sync batch norm's computation alone (world of one)"),
        ("master_fp32", "bf16 master, fp32 gradients folded and reduced (amp.mode=master now)"),
        ("master_bf16", "bf16 master, bf16 gradients reduced, then copied (before), buckets rebuilt"),
        ("master_bf16_static", "bf16 master, bf16 gradients reduced, then copied (before), static buckets")]
print(f"2 ranks x 1 thread, batch {j['batch_per_rank']} per rank, cnn_small, median of {j['reps']} interleaved steps "
      f"(slowest rank); one all_gather of 520 B {j['all_gather_520B_us']:.1f} us, all_reduce {j['all_reduce_520B_us']:.1f} us\n")
print("| variant | step (ms) | vs baseline | buckets | gradient bytes reduced | buckets held back per step |")
print("|---|---|---|---|---|---|")
for key, what in rows:
    v = j[key]
    print(f"| {what} | {v['step_ms']:.2f} | {v['step_ms'] / base:.3f}x | {v['buckets']} | {v['grad_bytes_per_step']} | {v['held_back_per_step']:.1f} |")
PY
