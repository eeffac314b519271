// core/malloc.h: the settings apply unless the user chose their own, and once applied a
// training-style loop (allocate, touch, free the same large block) stops page-faulting.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdlib>
#include <cstring>

#include "core/malloc.h"

namespace {

long minor_faults() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

}  // namespace

TEST(Malloc, UserSettingsWin) {
  for (const char* var : {"GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "RETORT_MALLOC"})
    ::unsetenv(var);
  ::setenv("RETORT_MALLOC", "system", 1);
  EXPECT_FALSE(retort::tune_malloc_for_training());
  ::unsetenv("RETORT_MALLOC");
  ::setenv("MALLOC_TRIM_THRESHOLD_", "1000000", 1);
  EXPECT_FALSE(retort::tune_malloc_for_training());
  ::unsetenv("MALLOC_TRIM_THRESHOLD_");
}

TEST(Malloc, ReusedBlocksStopPageFaulting) {
  for (const char* var : {"GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "RETORT_MALLOC"})
    ::unsetenv(var);
  ASSERT_TRUE(retort::tune_malloc_for_training());
  // One "step": four 16 MiB activations allocated, written, freed. With glibc's defaults
  // the 64 MiB freed at the heap top exceed the trim threshold and go back to the OS, so
  // every step faults all 16k pages in again (measured: 16352 faults a round).
  constexpr size_t kBytes = 16u << 20;
  constexpr long kPages = 4 * kBytes / 4096;
  auto step = [] {
    void* blocks[4];
    for (auto& p : blocks) {
      p = std::malloc(kBytes);
      ASSERT_NE(p, nullptr);
      std::memset(p, 1, kBytes);  // touch every page, as a kernel writing its output does
    }
    for (auto* p : blocks) std::free(p);
  };
  step();  // the first step faults its pages in
  const long before = minor_faults();
  for (int i = 0; i < 10; ++i) step();
  const long faults = minor_faults() - before;
  EXPECT_LT(faults, kPages) << faults << " minor page faults in 10 steps of " << kPages << " pages";
}
