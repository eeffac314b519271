#!/usr/bin/env bash
# Runs a multi-host training job and reruns it from its newest complete checkpoint when a
# rank or a host dies, instead of calling mpirun_multinode.sh directly.
#
#   launch/scripts/supervise.sh [--max-restarts 3] [--backoff 10] \
#       hosts.txt 4 recipes/text/lm_student.yaml run.dir=runs/lm [overrides...]
#
# Every attempt runs mpirun_multinode.sh with trainer.resume=auto on the hosts of the
# hostfile that answer the remote-launch agent (ssh, or OMPI_MCA_plm_rsh_agent), so a host
# that stays down leaves the job with fewer ranks: the global batch stays the same, only
# the order of float reductions changes. A run.dir= override is required (every attempt
# trains the same run). Exit codes 2 (usage, config) and 3 (data) end it at once, as a
# rerun would fail alike, and 5 (a rank was asked to stop: a checkpoint is written). Each restart is a line in <run.dir>/restarts.log. SIGINT or SIGTERM
# reach the job (every rank checkpoints) and end supervision.
set -uo pipefail

max_restarts=3
backoff=10
while [ $# -gt 0 ]; do
  case $1 in
    --max-restarts) max_restarts=${2:?--max-restarts needs a number}; shift 2 ;;
    --backoff) backoff=${2:?--backoff needs seconds}; shift 2 ;;
    --) shift; break ;;
    -*) echo "supervise.sh: unknown option '$1' (--max-restarts N, --backoff SECONDS)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 3 ]; then
  echo "usage: $0 [--max-restarts N] [--backoff SECONDS] <hostfile> <ranks-per-host> <recipe.yaml> run.dir=<dir> [overrides...]" >&2
  exit 2
fi
[[ $max_restarts =~ ^[0-9]+$ ]] || { echo "supervise.sh: --max-restarts '$max_restarts' is not a whole number" >&2; exit 2; }
[[ $backoff =~ ^[0-9]+$ ]] || { echo "supervise.sh: --backoff '$backoff' is not a whole number of seconds" >&2; exit 2; }
hostfile=$1; per_host=$2; recipe=$3; shift 3
[ -r "$hostfile" ] || { echo "supervise.sh: cannot read hostfile '$hostfile'" >&2; exit 2; }
run_dir=
for arg in "$@"; do [[ $arg == run.dir=* ]] && run_dir=${arg#run.dir=}; done
[ -n "$run_dir" ] || { echo "supervise.sh: give run.dir=<dir>: every attempt must resume the same run" >&2; exit 2; }

launcher="$(dirname "$0")/mpirun_multinode.sh"
read -r -a agent <<< "${OMPI_MCA_plm_rsh_agent:-ssh -o BatchMode=yes -o ConnectTimeout=5}"
live=$(mktemp /tmp/retort-hosts.XXXXXX)
trap 'rm -f "$live"' EXIT

note() {  # a line on stderr and in restarts.log
  echo "supervise.sh: $*" >&2
  mkdir -p "$run_dir" && echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) $*" >> "$run_dir/restarts.log"
}

# The hostfile's lines whose host runs `true` through the agent within 20 s.
answering_hosts() {
  : > "$live"
  silent=()
  while read -r line; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    host=${line%%[[:space:]]*}
    if timeout 20 "${agent[@]}" "$host" true < /dev/null > /dev/null 2>&1; then
      echo "$line" >> "$live"
    else
      silent+=("$host")
    fi
  done < "$hostfile"
}

newest_checkpoint() {
  ls -1d "$run_dir"/checkpoints/step-* 2> /dev/null | sort | tail -1  # complete: in-progress ones are .tmp-*
}

stopping=0
job=
forward() { stopping=1; [ -n "$job" ] && kill -TERM "$job" 2> /dev/null; }
trap forward INT TERM

attempt=0
while :; do
  answering_hosts
  if [ ! -s "$live" ]; then
    note "no host of $hostfile answers; giving up"
    exit 1
  fi
  [ ${#silent[@]} -gt 0 ] && note "hosts not answering, left out: ${silent[*]}"
  started=$(date +%s)
  "$launcher" "$live" "$per_host" "$recipe" "$@" trainer.resume=auto &
  job=$!
  wait "$job"; rc=$?
  while kill -0 "$job" 2> /dev/null; do wait "$job"; rc=$?; done  # a trapped signal interrupts wait
  job=
  [ "$rc" -eq 0 ] && exit 0
  [ "$stopping" -eq 1 ] && exit "$rc"
  case $rc in
    2 | 3) echo "supervise.sh: exit $rc is a usage, configuration or data error; not restarting" >&2; exit "$rc" ;;
    5) echo "supervise.sh: the job was stopped by a signal after a checkpoint; not restarting" >&2; exit "$rc" ;;
  esac
  ran=$(($(date +%s) - started))
  if [ "$attempt" -ge "$max_restarts" ]; then
    note "attempt $((attempt + 1)) ended with exit $rc after ${ran} s; $max_restarts restart(s) used, giving up"
    exit "$rc"
  fi
  attempt=$((attempt + 1))
  wait_s=$((backoff * (1 << (attempt - 1))))
  ckpt=$(newest_checkpoint)
  note "attempt $attempt ended with exit $rc after ${ran} s; restart $attempt of $max_restarts in ${wait_s} s from ${ckpt:-the start (no checkpoint yet)}"
  sleep "$wait_s" & wait $!
  [ "$stopping" -eq 1 ] && exit "$rc"
done
