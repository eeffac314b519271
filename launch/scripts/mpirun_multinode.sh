#!/usr/bin/env bash
# Data-parallel retort training over several hosts with Open MPI's mpirun.
#
#   launch/scripts/mpirun_multinode.sh hosts.txt 4 recipes/fmnist/distill.yaml trainer.max_epochs=20
#
# hosts.txt (Open MPI hostfile), one line per host with the ranks it takes:
#   node01 slots=4
#   node02 slots=4
# Every host needs the same retort build at the same path and passwordless ssh from this
# one (or another remote-launch agent: OMPI_MCA_plm_rsh_agent). The total rank count is
# hosts x ranks-per-host. Open MPI also reads any other OMPI_MCA_<param> from the
# environment (OMPI_MCA_btl_tcp_if_include=10.0.0.0/8, say).
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 <hostfile> <ranks-per-host> <recipe.yaml> [overrides...]" >&2
  exit 2
fi
hostfile=$1; per_host=$2; shift 2
RETORT=${RETORT:-$(pwd)/build/retort}
hosts=$(grep -cv '^\s*\(#\|$\)' "$hostfile")
np=$((hosts * per_host))

# A host that goes silent (power, cable, kernel) is noticed by mpirun's keepalive on its
# daemon's connection: after 10 + 5 x 2 s here instead of Open MPI's 300 + 20 x 9 s. Keep
# ddp.timeout_s above it: an abort that starts first waits on the silent host's connection
# (README, "Clusters").
export OMPI_MCA_oob_tcp_keepalive_time=${OMPI_MCA_oob_tcp_keepalive_time:-10}
export OMPI_MCA_oob_tcp_keepalive_intvl=${OMPI_MCA_oob_tcp_keepalive_intvl:-5}
export OMPI_MCA_oob_tcp_keepalive_probes=${OMPI_MCA_oob_tcp_keepalive_probes:-2}

extra=()
# Root inside containers: Open MPI refuses it unless told.
[ "$(id -u)" -eq 0 ] && extra+=(--allow-run-as-root)
[ -n "${LD_LIBRARY_PATH:-}" ] && extra+=(-x LD_LIBRARY_PATH)

# --map-by ppr:N:node   N ranks per host, filled host by host (local rank = GPU index)
# --bind-to socket      keeps each rank's threads on one socket's cores
# -x                    forwards these variables to the remote ranks
# --mca btl_tcp_if_include / NCCL_SOCKET_IFNAME: set both to your fabric on Ethernet.
exec mpirun "${extra[@]}" \
  --hostfile "$hostfile" -np "$np" \
  --map-by "ppr:${per_host}:node" --bind-to socket \
  -x OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" -x NCCL_DEBUG="${NCCL_DEBUG:-WARN}" -x PATH \
  "$RETORT" train "$@"
