#pragma once
// retort's CPU tensor allocator: large blocks are cached and reused, and what it holds
// stays within 1.5x the most that was live at once.
//
// LibTorch takes every CPU tensor from malloc (c10's DefaultCPUAllocator). glibc serves
// blocks above its mmap threshold (at most 32 MiB, see core/malloc.h) with a fresh mmap
// each time, so a training step that frees and re-allocates the same activations
// page-faults them in afresh every step (cnn_large, fp32, batch 512: ~80k faults a step,
// 3.7x slower than bf16; bench/RESULTS.md); blocks below it come from the heap, which
// never shrinks and whose peak depends on the order of allocations (fragmentation).
//
// Here every block of at least kMinCachedBytes is its own anonymous mapping. On free it is
// kept, by size; an allocation takes the smallest kept block that fits within 1/8 slack.
// When none fits, kept blocks are unmapped (freed longest ago first) until live + kept + the new
// block stays within kKeepFactor x the largest live total seen so far: memory held for
// large blocks is bounded by the live peak, whatever the allocation order or the sizes
// that come and go. A training loop repeats the same sizes every step, so after
// the first step nearly every allocation is a hit and nothing page-faults. Smaller blocks
// go to malloc.
//
// kKeepFactor 1.5 is measured (bench/RESULTS.md, cnn_large at batch 256 and 512): exact
// sizes need ~1.3x the live peak to cover a step (an activation and the gradient of its
// shape are live together, and freed blocks of one size cannot serve another); at 1.25
// blocks are unmapped and faulted back in every step (2-3x slower); at 1.5 misses stop
// after the first step. Against glibc's heap the step's max RSS drops to 0.67-0.86x, at the
// same step time, and fp32 at batch 512 stops page-faulting (1.3x faster).
//
// The ratio alone is too tight where few tensors are live at once but a pass needs blocks
// of many sizes: a forward without gradients (evaluation, `retort report`) holds a layer's
// input and output only, and cnn_small at batch 256 then unmapped and page-faulted part of
// its blocks in every pass (89-97 ms a batch vs 20 ms on glibc's heap, bench/RESULTS.md). So the bound is never below
// the live peak + kKeepFloorBytes (64 MiB, next to LibTorch's ~300 MB of resident code
// and data): small working sets fit whole, large ones are held to the ratio.
//
// Install once, early in main: retort::trainer::install_cpu_allocator().
// RETORT_MALLOC=system keeps LibTorch's own allocator (and glibc's defaults).
#include <c10/core/Allocator.h>
#include <torch/version.h>

#include <cstddef>
#include <cstdint>

namespace retort::trainer {

/// Blocks this large and larger are cached; smaller ones come from malloc.
constexpr size_t kMinCachedBytes = size_t{1} << 20;
/// Live + kept large blocks stay within this factor of the largest live total so far ...
constexpr double kKeepFactor = 1.5;
/// ... or within the largest live total plus this much, if that is more.
constexpr size_t kKeepFloorBytes = size_t{64} << 20;
/// What live + kept large blocks may reach, given the largest live total so far:
/// max(kKeepFactor x peak, peak + kKeepFloorBytes).
size_t held_bound(size_t peak_live_bytes);

struct CpuAllocatorStats {
  size_t live_bytes = 0;       // cached-size blocks handed out and not yet freed
  size_t cached_bytes = 0;     // kept for reuse (mapped, resident once touched)
  size_t peak_live_bytes = 0;  // the largest live_bytes so far
  size_t peak_mapped_bytes = 0;  // the largest live_bytes + cached_bytes so far
  uint64_t hits = 0;           // allocations served from the cache
  uint64_t misses = 0;         // allocations that mapped a new block
  uint64_t released = 0;       // cached blocks unmapped to stay within the peak
};

class CachingCpuAllocator final : public c10::Allocator {
 public:
  /// The process's one instance (blocks find it from a plain deleter function).
  static CachingCpuAllocator& instance();

  // LibTorch 2.3 made Allocator::allocate non-const and added copy_data as a pure virtual;
  // 1.13 (Debian) has the const allocate and no copy_data. Each overrides what its base has.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t bytes) override { return allocate_block(bytes); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t bytes) const override { return allocate_block(bytes); }
#endif
  /// Every block's deleter: supports LibTorch's raw_allocate / raw_deallocate.
  c10::DeleterFnPtr raw_deleter() const override;

  CpuAllocatorStats stats() const;
  /// Unmaps every cached block (live blocks stay); returns the bytes released.
  size_t empty_cache();
  /// Starts the peaks afresh from now (as torch.cuda.reset_peak_memory_stats). The live
  /// peak is also the bound kept blocks are held to, so this lets the cache shrink to a
  /// new, smaller working set.
  void reset_peak_stats();

 private:
  CachingCpuAllocator() = default;
  static c10::DataPtr allocate_block(size_t bytes);
};

/// Makes the caching allocator LibTorch's CPU allocator for the rest of the process, unless
/// RETORT_MALLOC=system. Returns whether it did. Call before the first tensor is created
/// (tensors created earlier keep their allocator, which is harmless).
bool install_cpu_allocator();

}  // namespace retort::trainer
