#!/usr/bin/env bash
# The cluster path on this machine (hosts as network namespaces, tests/cluster/hosts.sh):
#   1. step time of the student recipe: 2 hosts x 1 rank over TCP vs 2 ranks over shared
#      memory (best of REPS, alternating);
#   2. the reducer vs a raw MPI_Allreduce of the same gradients, over TCP and over shared
#      memory (bench/reducer_bench.cpp);
#   3. a host's death (its link down) to the job's end, and the supervisor's restart to
#      the first new step, on the surviving host.
# Needs root. Leaves no hosts behind.
#   bench/cluster_bench.sh [build_dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
reps=${REPS:-3}
hosts="$root/tests/cluster/hosts.sh"
tmp=$(mktemp -d)
trap '"$hosts" down; rm -rf "$tmp"' EXIT
"$hosts" up 2
printf 'rt-h1 slots=1\nrt-h2 slots=1\n' > "$tmp/hosts.txt"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tcp_env=(OMPI_MCA_plm_rsh_agent="$root/tests/cluster/netns_agent.sh" OMPI_MCA_oob_tcp_if_include=10.77.0.0/24
  OMPI_MCA_btl_tcp_if_include=10.77.0.0/24 RETORT="$build/retort")
shm=(mpirun --allow-run-as-root --oversubscribe -np 2)
rate() { sed -n 's/.*done: .* (\([0-9.]*\) samples\/s).*/\1/p' | tail -1; }

echo "## step time: recipes/fmnist/student.yaml, 200 steps, global batch 128, 1 thread per rank"
job="recipes/fmnist/student.yaml trainer.max_steps=200 trainer.threads=1 trainer.eval=false trainer.progress=plain trainer.checkpoint_every=1000000"
best_shm=0; best_tcp=0
for i in $(seq "$reps"); do
  s=$(cd "$root" && "${shm[@]}" "$build/retort" train $job run.dir="$tmp/shm-$i" 2>&1 | rate)
  t=$(cd "$root" && env "${tcp_env[@]}" launch/scripts/mpirun_multinode.sh "$tmp/hosts.txt" 1 $job run.dir="$tmp/tcp-$i" 2>&1 | rate)
  echo "  rep $i: shared memory $s, TCP $t samples/s"
  best_shm=$(python3 -c "print(max($best_shm, $s))"); best_tcp=$(python3 -c "print(max($best_tcp, $t))")
done
python3 -c "print(f'| 2 ranks, shared memory | {$best_shm:.0f} samples/s | {1000*128/$best_shm:.1f} ms/step |'); print(f'| 2 hosts, TCP | {$best_tcp:.0f} samples/s | {1000*128/$best_tcp:.1f} ms/step | {$best_shm/$best_tcp:.2f}x the step time |')"

echo "## reducer vs raw MPI_Allreduce (medians of ${REDUCER_REPS:-1000})"
for where in shm tcp; do
  if [ "$where" = shm ]; then
    out=$("${shm[@]}" "$build/bench/reducer_bench" --reps "${REDUCER_REPS:-1000}")
  else
    # Bound as mpirun_multinode.sh binds (each host would bind its one rank to core 0 by
    # default, and here the hosts share the cores).
    out=$(env "${tcp_env[@]}" mpirun --allow-run-as-root --hostfile "$tmp/hosts.txt" -np 2 --bind-to socket \
      "$build/bench/reducer_bench" --reps "${REDUCER_REPS:-1000}")
  fi
  python3 - "$where" "$out" <<'PY'
import json, sys
j = json.loads(sys.argv[2])
print(f"| {sys.argv[1]} | {j['bytes']} bytes | reducer {j['reducer_us']:.0f} us | raw MPI_Allreduce {j['raw_allreduce_us']:.0f} us | {j['reducer_vs_raw']:.2f}x | step overlapped {j['step_overlap_ms']:.2f} ms |")
PY
done

echo "## a host dies: to the job's end, and from the restart to the first new step"
run="$tmp/failover"
mlp="recipes/fmnist/default.yaml model=mlp optim=sgd data.subset=6400 data.batch_size=64 trainer.threads=1 trainer.eval=false trainer.max_epochs=1000 trainer.max_steps=4000 trainer.checkpoint_every=200 trainer.log_every=1 trainer.progress=plain"
(cd "$root" && env "${tcp_env[@]}" launch/scripts/supervise.sh --backoff 0 "$tmp/hosts.txt" 1 $mlp run.dir="$run" > "$tmp/failover.out" 2>&1) &
sup=$!
until grep -q '"step":1000[,}]' "$run/metrics.jsonl" 2> /dev/null; do sleep 0.05; done
# Silence, as a dead host gives the others: its processes here keep running, cut off.
# (Killing them would tell mpirun at once: its "ssh" child here is that host's daemon.)
died=$(date +%s.%N)
"$hosts" link rt-h2 down
until grep -q "restart 1 of" "$run/restarts.log" 2> /dev/null; do sleep 0.05; done
ip netns pids rt-h2 | xargs -r kill -9
wait "$sup"
python3 - "$died" "$run" <<'PY'
import datetime, re, sys
died, run = float(sys.argv[1]), sys.argv[2]
def t(stamp): return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
restarts = [l for l in open(f"{run}/restarts.log") if "restart 1 of" in l]
ended = t(restarts[0].split()[0])
log = open(f"{run}/train.log").read().splitlines()
resumed = next(i for i, l in enumerate(log) if "resumed from" in l)
first = next(l for l in log[resumed:] if re.search(r"step \d+/", l))
stamp = re.match(r"\[(\S+ \S+) ", first).group(1)
first_t = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()
print(f"| host down to the job's end | {ended - died:.1f} s |")
print(f"| restart (hosts probed, mpirun started) to the first new step | {first_t - ended:.1f} s |")
PY
grep -h "left out\|restart 1" "$run/restarts.log"
