#pragma once
// The LibTorch CUDA calls retort makes (launch/, and the GPU benchmarks), in one place:
// spellings that moved between LibTorch 1.13 (Debian) and 2.x (PyTorch wheels) are settled
// here and nowhere else.
// Checked against both: getStreamFromPool gained an int-priority overload in 2.x (a bool
// argument still selects the old one), Storage::data_ptr() became const-only in 2.x (a
// const DataPtr& is all recordStream needs), and DeviceIndex's width is not promised.
#if RETORT_HAVE_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

namespace retort::launch::compat {

inline c10::DeviceIndex device_index(int index) { return static_cast<c10::DeviceIndex>(index); }

/// A high-priority stream of LibTorch's pool, so collectives are not queued behind compute.
inline c10::cuda::CUDAStream stream_from_pool(int device) {
  return c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_index(device));
}

inline c10::cuda::CUDAStream current_stream(int device) {
  return c10::cuda::getCurrentCUDAStream(device_index(device));
}

/// Tells the caching allocator that `stream` uses `tensor`'s memory, so the block is not
/// handed out again until the work queued on `stream` so far has run.
inline void record_stream(const at::Tensor& tensor, const c10::cuda::CUDAStream& stream) {
  c10::cuda::CUDACachingAllocator::recordStream(tensor.storage().data_ptr(), stream);
}

/// The caching allocator's most bytes allocated at once on `device` since the last reset
/// (what torch.cuda.max_memory_allocated reports).
inline int64_t peak_allocated_bytes(int device) {
  return c10::cuda::CUDACachingAllocator::getDeviceStats(device_index(device)).allocated_bytes[0].peak;
}

inline void reset_peak_stats(int device) { c10::cuda::CUDACachingAllocator::resetPeakStats(device_index(device)); }

}  // namespace retort::launch::compat
#endif
