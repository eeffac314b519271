#!/usr/bin/env bash
# How far 2 ranks end from 1 process (bench/RESULTS.md, "Data parallel equals one process"):
# the student recipe for N steps as one process on 1 thread (the reference), one process on
# 2 threads (the same code, only the kernels' float summation order differs: the noise
# floor), 2 ranks with sync batch norm (the default) and 2 ranks with per-rank statistics.
# Prints, per run, the largest |difference| of any exported tensor relative to that
# tensor's largest weight, and whether torch.allclose(rtol=1e-4) holds.
#   bench/ddp_equivalence.sh [build_dir] [steps ...]     (default steps: 20 50)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
steps=("${@:-20 50}")
read -r -a steps <<< "${steps[*]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpi=(mpirun --oversubscribe -np 2)
[[ $(id -u) == 0 ]] && mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
cd "$root"
run() {  # name, launcher..., -- overrides...
  local name=$1; shift
  rm -rf "${work:?}/$name"
  "$@" run.dir="$work/$name" > "$work/$name.log" 2>&1 || { cat "$work/$name.log"; exit 1; }
  "$build/retort" export "$work/$name" "$work/$name.safetensors" > /dev/null
}
echo "| optimizer | steps | run | max relative difference | allclose(rtol=1e-4) |"
echo "|---|---|---|---|---|"
for optim in adamw sgd; do
  for n in "${steps[@]}"; do
    common=(recipes/fmnist/student.yaml trainer.max_steps="$n" trainer.eval=false trainer.device=cpu)
    [[ $optim == sgd ]] && common+=(optim=sgd optim.lr=3.0e-3)
    run one "$build/retort" train "${common[@]}" trainer.threads=1
    run threads2 "$build/retort" train "${common[@]}" trainer.threads=2
    run ranks2 "${mpi[@]}" "$build/retort" train "${common[@]}"
    run ranks2_local "${mpi[@]}" "$build/retort" train "${common[@]}" ddp.sync_batchnorm=false
    /usr/bin/python3 - "$work" "$optim" "$n" <<'PY'
import sys
sys.path.insert(0, "bench/reference")
import torch
from models import load_safetensors
work, optim, n = sys.argv[1:]
ref = load_safetensors(f"{work}/one.safetensors")
names = {"threads2": "1 process, 2 threads (noise floor)", "ranks2": "2 ranks, sync batch norm",
         "ranks2_local": "2 ranks, per-rank batch norm"}
for run, what in names.items():
    got = load_safetensors(f"{work}/{run}.safetensors")
    worst, close = 0.0, True
    for k, r in ref.items():
        if not r.is_floating_point():
            continue
        d = (got[k].double() - r.double()).abs().max().item() / max(r.abs().max().item(), 1e-30)
        worst = max(worst, d)
        close = close and torch.allclose(got[k], r, rtol=1e-4)
    print(f"| {optim} | {n} | {what} | {worst:.1e} | {'yes' if close else 'no'} |")
PY
  done
done
