#!/usr/bin/env bash
# The gradient reducer vs one raw MPI_Allreduce of the same bytes (both inside the same
# step, interleaved), and the share of
# communication hidden behind backward (bench/reducer_bench.cpp), 2 ranks x 1 thread.
#   bench/reducer_bench.sh [build_dir] [ranks]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
ranks=${2:-2}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe -np "$ranks")
[[ $(id -u) == 0 ]] && mpi=(mpirun --allow-run-as-root --oversubscribe -np "$ranks")
echo "| bucket_mb | buckets | grad bytes | reducer (us) | raw MPI_Allreduce (us) | ratio | raw MPI_Allreduce, tight loop (us) | raw MPI_Iallreduce + Wait (us) | communicator all_reduce (us) | step, overlapped (ms) | backward then all-reduce (ms) | backward alone (ms) | hidden share |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for mb in 25 0.1; do
  out=$("${mpi[@]}" "$build/bench/reducer_bench" --bucket_mb "$mb" --reps "${REPS:-300}")
  python3 - "$out" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
print(f"| {j['bucket_mb']} | {j['buckets']} | {j['bytes']} | {j['reducer_us']:.0f} | {j['raw_allreduce_us']:.0f} | "
      f"{j['reducer_vs_raw']:.2f} | {j['raw_allreduce_hot_loop_us']:.0f} | {j['raw_iallreduce_us']:.0f} | {j['communicator_us']:.0f} | {j['step_overlap_ms']:.2f} | {j['step_after_ms']:.2f} | {j['step_compute_ms']:.2f} | {100*j['hidden_share']:.0f} % |")
PY
done
