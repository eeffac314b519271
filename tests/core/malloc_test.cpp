// core/malloc.h and core/malloc_conf.cpp: this test program runs on jemalloc with retort's
// settings, as retort's programs do. Freed pages stay resident for the next step's
// allocations until release_free_memory hands them back.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "core/malloc.h"

namespace {

int64_t resident_kb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

}  // namespace

TEST(Malloc, FreedPagesStayForReuseUntilReleased) {
  constexpr size_t kBytes = size_t{64} << 20;
  const int64_t before = resident_kb();
  ASSERT_GT(before, 0);
  char* block = static_cast<char*>(std::malloc(kBytes));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBytes);                  // every page resident
  asm volatile("" : : "r"(block) : "memory");     // the stores are not dead
  std::free(block);
  EXPECT_GT(resident_kb() - before, 48 * 1024);   // kept: no decay
  retort::release_free_memory();
  EXPECT_LT(resident_kb() - before, 16 * 1024);   // handed back
}
