# CUDA + NCCL detection. Included when RETORT_WITH_CUDA is AUTO or ON.
# Sets RETORT_HAVE_CUDA and the imported target retort_nccl when LibTorch is a CUDA
# build and NCCL (header + library) is found. Owned by launch/ (NcclCommunicator).
set(_retort_torch_cuda OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(_retort_torch_cuda ON)
endif()
find_path(NCCL_INCLUDE_DIR nccl.h
  HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} PATH_SUFFIXES include
  PATHS /usr/local/cuda/include /usr/include)
find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2
  HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} PATH_SUFFIXES lib lib64
  PATHS /usr/local/cuda/lib64 /usr/local/cuda/lib)
if(_retort_torch_cuda AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
  set(RETORT_HAVE_CUDA ON)
  add_library(retort_nccl INTERFACE)
  target_include_directories(retort_nccl INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(retort_nccl INTERFACE ${NCCL_LIBRARY})
elseif(RETORT_WITH_CUDA STREQUAL "ON")
  message(FATAL_ERROR "RETORT_WITH_CUDA=ON needs a CUDA LibTorch (found: ${_retort_torch_cuda}) "
                      "and NCCL (header: ${NCCL_INCLUDE_DIR}, library: ${NCCL_LIBRARY})")
endif()
