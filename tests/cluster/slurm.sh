#!/usr/bin/env bash
# A Slurm cluster on this machine for the cluster tests: munged and slurmctld in the root
# namespace, one slurmd per namespace host of hosts.sh (its own address, hostname and /tmp),
# all under a folder of the test's own (not under /tmp): nothing in /etc is touched.
#
#   tests/cluster/slurm.sh up <dir> rt-h1 rt-h2   prints the SLURM_CONF to export
#   tests/cluster/slurm.sh down <dir>           (job steps left on a host go with hosts.sh down)
#
# Needs root, Debian's slurm-wlm and munge, and the hosts already up (hosts.sh up N).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

down() {  # every daemon started with a path under <dir> on its command line
  local dir=$1
  pkill -f -- "$dir/" 2> /dev/null || true
  sleep 0.5
  pkill -9 -f -- "$dir/" 2> /dev/null || true
  rm -f "$dir"/*.pid
}

up() {
  local dir=$1; shift
  local nodes=("$@") cpus
  cpus=$(nproc)
  mkdir -p "$dir/state" "$dir/log"
  down "$dir"
  # munge: a key and a socket of our own.
  [ -f "$dir/munge.key" ] || dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 600 "$dir/munge.key"
  mkdir -p "$dir/munge" && chmod 700 "$dir/munge"
  munged --force --key-file="$dir/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"
  local controller
  controller=$(hostname)
  {
    echo "ClusterName=retort-test"
    echo "SlurmctldHost=$controller(10.77.0.1)"
    echo "AuthType=auth/munge"
    # cred_expire: also how long a requeued job waits before it may start again (120 s).
    echo "AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10"
    echo "CredType=cred/munge"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "SlurmctldPort=16817"
    echo "SlurmdPort=16818"
    echo "StateSaveLocation=$dir/state"
    echo "SlurmdSpoolDir=$dir/spool-%n"
    echo "SlurmctldPidFile=$dir/slurmctld.pid"
    echo "SlurmdPidFile=$dir/slurmd-%n.pid"
    echo "SlurmctldLogFile=$dir/log/slurmctld.log"
    echo "SlurmdLogFile=$dir/log/slurmd-%n.log"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"  # the hosts share 2 cores: binding would put every task on core 0
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "SchedulerType=sched/backfill"
    echo "ReturnToService=2"
    echo "JobRequeue=1"
    echo "MpiDefault=none"
    echo "SlurmctldTimeout=30"
    echo "SlurmdTimeout=30"
    echo "InactiveLimit=0"
    echo "KillWait=5"
    echo "MinJobAge=600"
    echo "PlugStackConfig=/dev/null"
    for node in "${nodes[@]}"; do
      echo "NodeName=$node NodeAddr=$("$here/hosts.sh" ip "$node") CPUs=$cpus State=UNKNOWN"
    done
    echo "PartitionName=test Nodes=$(IFS=,; echo "${nodes[*]}") Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4"
  } > "$dir/slurm.conf"
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -i -f "$dir/slurm.conf"
  for node in "${nodes[@]}"; do
    mkdir -p "$dir/spool-$node" "$dir/tmp-$node"
    # Its own hostname and /tmp (PMIx's rendezvous folders there are named by job, not
    # host). nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup mounts.
    nsenter --net="/var/run/netns/$node" unshare --uts --mount --propagation private /bin/sh -c \
      "hostname $node && mount --bind $dir/tmp-$node /tmp && exec slurmd -N $node -f $dir/slurm.conf"
  done
  # Ready when every node is idle.
  for _ in $(seq 1 60); do
    if [ "$(sinfo -h -N -o '%t' 2> /dev/null | grep -c '^idle')" -eq "${#nodes[@]}" ]; then
      echo "$dir/slurm.conf"
      return 0
    fi
    sleep 0.5
  done
  echo "slurm.sh: the nodes did not become idle within 30 s:" >&2
  sinfo -N >&2 || true
  tail -5 "$dir"/log/*.log >&2 || true
  return 1
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down "${2:?dir}" ;;
  *) echo "usage: $0 up <dir> <host>... | down <dir>" >&2; exit 2 ;;
esac
