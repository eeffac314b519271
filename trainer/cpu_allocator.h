#pragma once
// retort's CPU tensor allocator: large blocks are cached and reused, and what it holds
// stays within 1.5x the most that was live at once.
//
// LibTorch takes every CPU tensor from malloc, and glibc serves blocks above its mmap
// threshold (core/malloc.h) with a fresh mmap each time: a step that frees and
// re-allocates the same activations page-faults them in afresh every step.
//
// Here every block of at least kMinCachedBytes is its own anonymous mapping, kept by size
// when freed; an allocation takes the smallest kept block that fits within 1/8 slack.
// When none fits, kept blocks are unmapped (freed longest ago first) until live + kept +
// the new block stays within max(kKeepFactor x the largest live total seen so far, that
// total + kKeepFloorBytes): held memory is bounded by the live peak whatever the order of
// allocations. kKeepFactor covers a step's mix of sizes (an activation and the gradient of
// its shape live together); the floor covers forward-only passes, which need blocks of
// many sizes while few are live. Both are measured (bench/RESULTS.md, "Allocator"). Smaller
// blocks go to malloc.
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
