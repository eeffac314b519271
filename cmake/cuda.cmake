# CUDA + NCCL detection. Included when RETORT_WITH_CUDA is AUTO or ON. Owned by launch/
# (NcclCommunicator).
#
# Sets RETORT_HAVE_CUDA and the interface target retort_nccl (NCCL headers and library,
# plus the CUDA runtime) when the LibTorch found is a CUDA build and NCCL is found.
#
# Where NCCL is looked for, in order:
#   -DNCCL_ROOT=... or $NCCL_ROOT        (shared/gpu/env.sh sets it)
#   the nvidia-nccl-cu* wheel beside the LibTorch found (site-packages/nvidia/nccl), then
#   the one python3 imports             (PyTorch wheels' own NCCL)
#   $CUDA_HOME, /usr/local/cuda, /usr
# The Python package ships only libnccl.so.2 (no unversioned libnccl.so), hence the
# explicit name.

set(_retort_torch_cuda OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(_retort_torch_cuda ON)
endif()

set(_retort_nccl_hints ${NCCL_ROOT} $ENV{NCCL_ROOT})
if(TORCH_INSTALL_PREFIX AND EXISTS ${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include/nccl.h)
  get_filename_component(_retort_wheel_nccl ${TORCH_INSTALL_PREFIX}/../nvidia/nccl ABSOLUTE)
  list(APPEND _retort_nccl_hints ${_retort_wheel_nccl})
endif()
if(_retort_torch_cuda AND NOT NCCL_ROOT AND NOT DEFINED ENV{NCCL_ROOT} AND NOT _retort_wheel_nccl)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    execute_process(
      COMMAND ${Python3_EXECUTABLE} -c
              "import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])"
      OUTPUT_VARIABLE _retort_py_nccl OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
      RESULT_VARIABLE _retort_py_rc)
    if(_retort_py_rc EQUAL 0 AND _retort_py_nccl)
      list(APPEND _retort_nccl_hints ${_retort_py_nccl})
    endif()
  endif()
endif()

find_path(NCCL_INCLUDE_DIR nccl.h
  HINTS ${_retort_nccl_hints} PATH_SUFFIXES include
  PATHS $ENV{CUDA_HOME}/include /usr/local/cuda/include /usr/include)
# NAMES_PER_DIR: the hinted folder's libnccl.so.2 must win over a system libnccl.so of
# another version (headers and library must match).
find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR
  HINTS ${_retort_nccl_hints} PATH_SUFFIXES lib lib64
  PATHS $ENV{CUDA_HOME}/lib64 /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu)

if(_retort_torch_cuda AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
  # The communicator calls the CUDA runtime itself (events, stream waits).
  find_package(CUDAToolkit QUIET)
  set(RETORT_HAVE_CUDA ON)
  add_library(retort_nccl INTERFACE)
  target_include_directories(retort_nccl INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(retort_nccl INTERFACE ${NCCL_LIBRARY})
  if(TARGET CUDA::cudart)
    target_link_libraries(retort_nccl INTERFACE CUDA::cudart)
  endif()
  message(STATUS "retort: NCCL ${NCCL_LIBRARY} (headers ${NCCL_INCLUDE_DIR})")
elseif(RETORT_WITH_CUDA STREQUAL "ON")
  message(FATAL_ERROR "RETORT_WITH_CUDA=ON needs a CUDA LibTorch (found: ${_retort_torch_cuda}) "
                      "and NCCL (header: ${NCCL_INCLUDE_DIR}, library: ${NCCL_LIBRARY}); "
                      "set NCCL_ROOT to a folder with include/nccl.h and lib/libnccl.so.2")
endif()
