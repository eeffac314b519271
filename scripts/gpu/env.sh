# Source this on the GPU machine:  source .gpu/env.sh .gpu/debs   (docs/GPU.md)
# Unpacks the Debian packages brought along into /tmp/devdeps and points CMake, the linker
# and Open MPI at them, at the LibTorch inside the machine's PyTorch, and at its NCCL.
debs=${1:-.gpu/debs}
prefix=/tmp/devdeps
if [ ! -d "$prefix/usr" ]; then
  mkdir -p "$prefix"
  for d in "$debs"/*.deb; do dpkg -x "$d" "$prefix"; done
fi
lib=$prefix/usr/lib/x86_64-linux-gnu
py=$(command -v python3)
export TORCH_PREFIX=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
export NCCL_ROOT=$("$py" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])' 2>/dev/null)
# CMake reads CMAKE_PREFIX_PATH from the environment with the OS path separator (:).
export CMAKE_PREFIX_PATH="$TORCH_PREFIX:$prefix/usr:$lib/cmake"
export OPAL_PREFIX=$prefix/usr
export PATH=$prefix/usr/bin:$PATH
export LD_LIBRARY_PATH=$lib/openmpi/lib:$lib:${NCCL_ROOT:+$NCCL_ROOT/lib:}${LD_LIBRARY_PATH:-}
export MPI_HOME=$lib/openmpi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -e "$prefix/usr/bin/mpirun" ] || ln -sf orterun "$prefix/usr/bin/mpirun"
[ -e "$prefix/usr/bin/mpicxx" ] || ln -sf mpicxx.openmpi "$prefix/usr/bin/mpicxx"
echo "env.sh: torch cmake prefix $TORCH_PREFIX; NCCL ${NCCL_ROOT:-not found}; deps in $prefix"
