#!/usr/bin/env bash
# Hosts on this machine for the cluster tests: each a network namespace with its own
# address, hostname and veth link to a bridge in the root namespace, where mpirun runs.
#
#   tests/cluster/hosts.sh up 2       rt-h1 (10.77.0.11), rt-h2 (10.77.0.12)
#   tests/cluster/hosts.sh down       removes every rt-h* namespace, link and the bridge
#   tests/cluster/hosts.sh link rt-h2 down|up
#   tests/cluster/hosts.sh degrade rt-h2 <loss %> <rate>   random drop and a rate limit
#
# Needs root and iproute2 (nftables for degrade). The names and the 10.77.0.0/24 subnet
# are this script's alone: `down` removes only what `up` made.
set -euo pipefail

bridge=rtbr0
subnet=10.77.0
prefix=rt-h

host_ip() { echo "$subnet.$((10 + ${1#"$prefix"}))"; }

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$prefix" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
  nft delete table bridge retort_cluster 2>/dev/null || true
}

up() {
  local n=$1
  down
  ip link add "$bridge" type bridge
  ip addr add "$subnet.1/24" dev "$bridge"
  ip link set "$bridge" up
  for i in $(seq 1 "$n"); do
    local ns=$prefix$i
    ip netns add "$ns"
    ip link add "$ns" type veth peer name eth0 netns "$ns"
    ip link set "$ns" master "$bridge" up
    ip -n "$ns" addr add "$(host_ip "$ns")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

# A random share of the host's packets dropped in both directions (on the bridge) and its link limited to
# a rate: the kernel here has no netem (CONFIG_NET_SCH_NETEM), so nftables' random numbers
# and a token bucket stand in for it.
degrade() {
  local ns=$1 loss=$2 rate=$3
  local per_mille=$((loss * 10))
  nft -f - <<RULES
table bridge retort_cluster {
  chain forward {
    type filter hook forward priority 0;
    iifname "$ns" numgen random mod 1000 < $per_mille drop
    oifname "$ns" numgen random mod 1000 < $per_mille drop
  }
}
RULES
  tc qdisc replace dev "$ns" root tbf rate "$rate" burst 32kb latency 400ms
  ip netns exec "$ns" tc qdisc replace dev eth0 root tbf rate "$rate" burst 32kb latency 400ms
}

case ${1:-} in
  up) up "${2:?hosts}" ;;
  down) down ;;
  link) ip link set "${2:?host}" "${3:?down|up}" ;;
  degrade) degrade "${2:?host}" "${3:?loss %}" "${4:?rate}" ;;
  ip) host_ip "${2:?host}" ;;
  *) echo "usage: $0 up N | down | link HOST down|up | degrade HOST LOSS% RATE | ip HOST" >&2; exit 2 ;;
esac
