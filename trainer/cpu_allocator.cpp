#include "trainer/cpu_allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include "core/malloc.h"

namespace retort::trainer {
namespace {

constexpr size_t kAlignment = 64;  // as c10's DefaultCPUAllocator (SIMD loads, cache lines)

/// A freed block kept for reuse: in the free-order list, and findable by size.
struct Kept {
  void* ptr;
  size_t size;
  std::multimap<size_t, std::list<Kept>::iterator>::iterator by_size;
};

/// Everything the allocator knows, behind one lock. allocate() is const in c10's
/// interface and deleters are plain functions, so the state lives here, not in the object.
struct State {
  std::mutex mu;
  std::list<Kept> kept;  // in the order they were freed: the front is the stalest
  std::multimap<size_t, std::list<Kept>::iterator> by_size;  // for best fit
  std::unordered_map<void*, size_t> live;                    // block -> its size, for the deleter
  CpuAllocatorStats stats;
};

State& state() {
  static auto* s = new State;  // never destroyed: tensors may be freed during exit
  return *s;
}

size_t page_size() {
  static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

/// A fresh anonymous mapping of `size` bytes, or MAP_FAILED.
void* map_block(size_t size) {
  return ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/// Takes a kept block out of the cache (to reuse or unmap it). Caller holds the lock.
void forget(State& s, std::list<Kept>::iterator it) {
  s.stats.cached_bytes -= it->size;
  s.by_size.erase(it->by_size);
  s.kept.erase(it);
}

/// Unmaps the block freed longest ago: blocks a repeating step still uses were freed
/// recently, while those of another phase (evaluation, an epoch's short last batch) go
/// stale. (Unmapping the largest first kept such stale blocks forever and made training
/// after the first evaluation re-map its own blocks every step.)
/// Caller holds the lock; the cache is not empty.
void release_stalest(State& s) {
  auto it = s.kept.begin();
  ::munmap(it->ptr, it->size);
  ++s.stats.released;
  forget(s, it);
}

void deallocate(void* ptr) {
  if (ptr == nullptr) return;
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.live.find(ptr);
    if (it != s.live.end()) {
      const size_t size = it->second;
      s.live.erase(it);
      s.stats.live_bytes -= size;
      s.stats.cached_bytes += size;
      auto kept = s.kept.insert(s.kept.end(), Kept{ptr, size, {}});
      kept->by_size = s.by_size.emplace(size, kept);
      return;
    }
  }
  std::free(ptr);  // a small block, from posix_memalign
}

}  // namespace

size_t held_bound(size_t peak_live_bytes) {
  return std::max(static_cast<size_t>(static_cast<double>(peak_live_bytes) * kKeepFactor),
                  peak_live_bytes + kKeepFloorBytes);
}

CachingCpuAllocator& CachingCpuAllocator::instance() {
  static auto* allocator = new CachingCpuAllocator;  // outlives every tensor, as c10 asks
  return *allocator;
}

c10::DataPtr CachingCpuAllocator::allocate_block(size_t bytes) {
  const c10::Device cpu(c10::DeviceType::CPU);
  if (bytes < kMinCachedBytes) {
    void* ptr = nullptr;
    if (bytes > 0 && ::posix_memalign(&ptr, kAlignment, bytes) != 0)
      TORCH_CHECK(false, "CPU allocator: out of memory allocating ", bytes, " bytes");
    return {ptr, ptr, &deallocate, cpu};
  }
  const size_t page = page_size();
  const size_t size = (bytes + page - 1) / page * page;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  void* ptr = nullptr;
  size_t block = size;
  // Best fit: the smallest kept block that wastes at most 1/8 of the request.
  auto fit = s.by_size.lower_bound(size);
  if (fit != s.by_size.end() && fit->first - size <= size / 8) {
    block = fit->first;
    ptr = fit->second->ptr;
    forget(s, fit->second);
    ++s.stats.hits;
  } else {
    // A new mapping: first unmap kept blocks until live + kept + this block stays within
    // held_bound of the largest live total seen (or what must be live now, if that is more).
    const size_t budget = std::max(held_bound(s.stats.peak_live_bytes), s.stats.live_bytes + size);
    while (!s.kept.empty() && s.stats.live_bytes + s.stats.cached_bytes + size > budget) release_stalest(s);
    void* mapped = map_block(size);
    if (mapped == MAP_FAILED) {  // the cache may hold what the system lacks: give it all back, once
      while (!s.kept.empty()) release_stalest(s);
      mapped = map_block(size);
    }
    TORCH_CHECK(mapped != MAP_FAILED, "CPU allocator: out of memory mapping ", size, " bytes (",
                s.stats.live_bytes, " bytes in live tensors of 1 MiB or more): ", std::strerror(errno));
    ptr = mapped;
    ++s.stats.misses;
  }
  s.live.emplace(ptr, block);
  s.stats.live_bytes += block;
  s.stats.peak_live_bytes = std::max(s.stats.peak_live_bytes, s.stats.live_bytes);
  s.stats.peak_mapped_bytes = std::max(s.stats.peak_mapped_bytes, s.stats.live_bytes + s.stats.cached_bytes);
  return {ptr, ptr, &deallocate, cpu};
}

c10::DeleterFnPtr CachingCpuAllocator::raw_deleter() const { return &deallocate; }

CpuAllocatorStats CachingCpuAllocator::stats() const {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.stats;
}

size_t CachingCpuAllocator::empty_cache() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const size_t bytes = s.stats.cached_bytes;
  while (!s.kept.empty()) release_stalest(s);
  return bytes;
}

void CachingCpuAllocator::reset_peak_stats() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.stats.peak_live_bytes = s.stats.live_bytes;
  s.stats.peak_mapped_bytes = s.stats.live_bytes + s.stats.cached_bytes;
}

bool install_cpu_allocator() {
  if (system_malloc_requested()) return false;
  // Priority 1: above c10's default allocator (0), so a later default registration
  // cannot take the place back.
  c10::SetCPUAllocator(&CachingCpuAllocator::instance(), /*priority=*/1);
  return true;
}

}  // namespace retort::trainer
