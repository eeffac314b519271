// trainer/cpu_allocator.h: large blocks are reused across training steps without page
// faults, what is kept never exceeds the live peak, small blocks and LibTorch's raw
// interface work, and installing it routes LibTorch's CPU tensors through it.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include <c10/core/CPUAllocator.h>

#include "trainer/cpu_allocator.h"

namespace {

using retort::trainer::CachingCpuAllocator;
using retort::trainer::kMinCachedBytes;

constexpr size_t kMiB = size_t{1} << 20;

long minor_faults() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

CachingCpuAllocator& fresh_allocator() {
  auto& a = CachingCpuAllocator::instance();
  a.empty_cache();
  a.reset_peak_stats();
  return a;
}

}  // namespace

TEST(CpuAllocator, ATrainingStepReusesItsBlocksWithoutPageFaults) {
  auto& a = fresh_allocator();
  // One "step": activations of three sizes allocated and written (forward), then gradients
  // of the same sizes while the activations are freed (backward), then all freed.
  const std::vector<size_t> sizes = {24 * kMiB + 100, 12 * kMiB, 3 * kMiB + 4096};
  auto step = [&] {
    std::vector<c10::DataPtr> acts, grads;
    for (size_t n : sizes) {
      acts.push_back(a.allocate(n));
      std::memset(acts.back().get(), 1, n);
    }
    for (size_t i = sizes.size(); i-- > 0;) {
      grads.push_back(a.allocate(sizes[i]));
      std::memset(grads.back().get(), 2, sizes[i]);
      acts[i].clear();
    }
  };
  // The first step maps and faults its blocks in. The bound on kept blocks grows with the
  // live peak as that step runs, so a block may be unmapped there and mapped again once
  // in the second step; from then on the step is served from the cache.
  step();
  step();
  const auto before = a.stats();
  const long faults_before = minor_faults();
  for (int i = 0; i < 10; ++i) step();
  const long faults = minor_faults() - faults_before;
  const auto after = a.stats();
  EXPECT_EQ(after.misses, before.misses) << "a repeated step should map nothing new";
  EXPECT_EQ(after.hits - before.hits, 10 * 2 * sizes.size());
  long pages = 0;
  for (size_t n : sizes) pages += static_cast<long>(n / 4096);
  EXPECT_LT(faults, pages) << faults << " minor faults in 10 steps touching " << 20 * pages << " pages";
  EXPECT_EQ(after.live_bytes, before.live_bytes);
}

TEST(CpuAllocator, HeldBoundIsTheRatioOrTheFloorAboveThePeak) {
  using retort::trainer::held_bound;
  using retort::trainer::kKeepFloorBytes;
  EXPECT_EQ(held_bound(0), kKeepFloorBytes);
  EXPECT_EQ(held_bound(24 * kMiB), 24 * kMiB + kKeepFloorBytes);   // small working sets: the floor
  EXPECT_EQ(held_bound(128 * kMiB), 192 * kMiB);                    // where the two meet
  EXPECT_EQ(held_bound(1024 * kMiB), 1536 * kMiB);                  // large ones: the ratio
}

// Sizes in units of 16 MiB, so that the ratio (not the floor) is the bound. Mappings never
// touched cost no memory.
TEST(CpuAllocator, KeptBlocksAreUnmappedBeyondTheBoundOnTheLivePeak) {
  auto& a = fresh_allocator();
  const size_t live0 = a.stats().live_bytes;
  ASSERT_EQ(live0, 0u) << "another test left large blocks alive";
  constexpr size_t U = 16 * kMiB;
  auto x = a.allocate(4 * U);
  auto y = a.allocate(8 * U);
  x.clear();  // 4 U kept; 12 U was the live peak, so 18 U may stay mapped
  const auto kept = a.stats();
  EXPECT_EQ(kept.cached_bytes, 4 * U);
  EXPECT_EQ(kept.peak_live_bytes, 12 * U);
  EXPECT_EQ(retort::trainer::held_bound(12 * U), 18 * U);
  // 7 U does not fit the kept 4 U block, and mapping it beside that block would hold
  // 19 U: the kept block goes first.
  auto z = a.allocate(7 * U);
  const auto s = a.stats();
  EXPECT_EQ(s.released - kept.released, 1u);
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(s.live_bytes, 15 * U);
  EXPECT_LE(s.peak_mapped_bytes, 18 * U);
  // A kept block within 1/8 of the request is reused whole rather than mapping a new one ...
  z.clear();
  auto w = a.allocate(7 * U - 700 * 16 * 1024);
  EXPECT_EQ(a.stats().hits - s.hits, 1u);
  EXPECT_EQ(a.stats().live_bytes, 15 * U);
  // ... but one more than 1/8 larger is not.
  w.clear();
  auto v = a.allocate(4 * U);
  EXPECT_EQ(a.stats().hits - s.hits, 1u);
  EXPECT_EQ(a.stats().misses - s.misses, 1u);
}

TEST(CpuAllocator, BlocksLeftFromAnotherPhaseGoBeforeTheStepsOwn) {
  auto& a = fresh_allocator();
  ASSERT_EQ(a.stats().live_bytes, 0u) << "another test left large blocks alive";
  // In units of 8 MiB, so that the ratio (not the floor) is the bound.
  constexpr size_t U = 8 * kMiB;
  // A step: 16 and 4 U live together (peak 20 U, so 30 U may be held), then 8 U.
  ASSERT_EQ(retort::trainer::held_bound(20 * U), 30 * U);
  auto step = [&] {
    {
      auto x = a.allocate(16 * U);
      auto y = a.allocate(4 * U);
    }
    auto z = a.allocate(8 * U);
  };
  step();
  step();
  // Another phase (an evaluation, an epoch's short last batch) leaves 2 and 3 U blocks.
  a.allocate(2 * U).clear();
  a.allocate(3 * U).clear();
  // Back to training: the stale blocks must be the ones unmapped. Unmapping the largest
  // first kept them forever and re-mapped the 16 and 8 U blocks in every step.
  step();
  const auto before = a.stats();
  for (int i = 0; i < 5; ++i) step();
  EXPECT_EQ(a.stats().misses, before.misses);
  EXPECT_EQ(a.stats().released, before.released);
}

TEST(CpuAllocator, MappedMemoryStaysWithinTheBoundForAnyOrderOfSizes) {
  auto& a = fresh_allocator();
  ASSERT_EQ(a.stats().live_bytes, 0u) << "another test left large blocks alive";
  std::mt19937 rng(7);
  std::vector<c10::DataPtr> live;
  for (int op = 0; op < 3000; ++op) {
    if (live.size() < 24 && (live.empty() || rng() % 3 != 0)) {
      live.push_back(a.allocate(kMiB + rng() % (12 * kMiB)));  // pages are never touched
    } else {
      std::swap(live[rng() % live.size()], live.back());
      live.pop_back();
    }
    const auto s = a.stats();
    ASSERT_LE(s.live_bytes + s.cached_bytes, retort::trainer::held_bound(s.peak_live_bytes)) << "after operation " << op;
  }
  const auto s = a.stats();
  EXPECT_GT(s.hits, 0u);
  EXPECT_GT(s.released, 0u) << "the sequence should have exercised unmapping";
  live.clear();
  EXPECT_EQ(a.stats().live_bytes, 0u);
  EXPECT_EQ(a.empty_cache(), s.live_bytes + s.cached_bytes);
  EXPECT_EQ(a.stats().cached_bytes, 0u);
}

TEST(CpuAllocator, AForwardOnlyPassReusesItsBlocks) {
  auto& a = fresh_allocator();
  ASSERT_EQ(a.stats().live_bytes, 0u) << "another test left large blocks alive";
  // Inference (cnn_small at batch 256, no gradients): each layer's output is live only
  // with its input, so the live peak is two activations while a pass needs blocks of many
  // sizes. Held to 1.5x that peak alone, the cache unmapped some of them in every pass and
  // the pass page-faulted them back in (`retort report`: 89-97 ms a batch vs 20 on glibc's heap).
  const std::vector<size_t> sizes = {12845056, 12845056, 12845056, 3211264, 6422528, 6422528, 6422528, 1605632};
  auto pass = [&] {
    c10::DataPtr in = a.allocate(sizes[0]);
    for (size_t i = 1; i < sizes.size(); ++i) {
      c10::DataPtr out = a.allocate(sizes[i]);
      in = std::move(out);  // the input is freed once the output exists
    }
  };
  pass();
  pass();
  const auto before = a.stats();
  for (int i = 0; i < 5; ++i) pass();
  EXPECT_EQ(a.stats().misses, before.misses) << "a repeated pass should map nothing new";
  EXPECT_EQ(a.stats().released, before.released);
}

TEST(CpuAllocator, SmallBlocksComeFromMallocAndTheRawInterfaceWorks) {
  auto& a = fresh_allocator();
  const auto before = a.stats();
  {
    auto small = a.allocate(kMinCachedBytes - 1);
    ASSERT_NE(small.get(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(small.get()) % 64, 0u) << "64-byte aligned, as c10's";
    std::memset(small.get(), 3, kMinCachedBytes - 1);
  }
  EXPECT_EQ(a.stats().hits + a.stats().misses, before.hits + before.misses) << "small blocks bypass the cache";
  EXPECT_EQ(a.allocate(0).get(), nullptr);
  // raw_allocate asserts data == context and frees through raw_deleter(): both sizes.
  for (size_t n : {size_t{4096}, 2 * kMiB}) {
    void* p = a.raw_allocate(n);
    ASSERT_NE(p, nullptr);
    std::memset(p, 4, n);
    a.raw_deallocate(p);
  }
  EXPECT_EQ(a.stats().live_bytes, before.live_bytes);
  EXPECT_EQ(a.stats().cached_bytes, 2 * kMiB);
}

TEST(CpuAllocator, InstalledItServesLibTorchsTensorsUnlessTheUserOptsOut) {
  ::setenv("RETORT_MALLOC", "system", 1);
  EXPECT_FALSE(retort::trainer::install_cpu_allocator());
  EXPECT_NE(c10::GetCPUAllocator(), &CachingCpuAllocator::instance());
  ::unsetenv("RETORT_MALLOC");
  ASSERT_TRUE(retort::trainer::install_cpu_allocator());
  EXPECT_EQ(c10::GetCPUAllocator(), &CachingCpuAllocator::instance());
  auto& a = fresh_allocator();
  const auto before = a.stats();
  {
    auto t = torch::ones({1024, 1024});  // 4 MiB
    auto u = (t * 2).sum();
    EXPECT_EQ(u.item<float>(), 2.0f * 1024 * 1024);
    EXPECT_GE(a.stats().live_bytes - before.live_bytes, 4 * kMiB);
  }
  EXPECT_EQ(a.stats().live_bytes, before.live_bytes);
  EXPECT_GE(a.stats().misses + a.stats().hits - before.misses - before.hits, 2u);
}
