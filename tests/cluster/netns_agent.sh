#!/usr/bin/env bash
# Open MPI's remote-launch agent for the namespace hosts of hosts.sh, in place of ssh:
# mpirun calls `agent <host> <command...>`; the command runs inside the host's network
# namespace under its own hostname, as sshd would run it on that host. Like ssh, it first
# reaches the host over the network, and fails (255) when the host does not answer: a
# refused connection is an answer.
set -uo pipefail
host=$1
shift
ip=$("$(dirname "$0")/hosts.sh" ip "$host")
reply=$(timeout 3 bash -c "exec 3<>/dev/tcp/$ip/9" 2>&1)
if [[ $reply != *"Connection refused"* ]]; then
  echo "netns_agent: connect to host $host ($ip): ${reply:-no answer}" >&2
  exit 255
fi
exec ip netns exec "$host" unshare --uts /bin/sh -c "hostname $host && exec $*"
