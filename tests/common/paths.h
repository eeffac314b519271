#pragma once
// Where the tests find the source tree (include as "tests/common/paths.h").
#include <cstdlib>
#include <filesystem>

namespace retort::test {

/// The source tree: $RETORT_SOURCE_DIR (ctest sets it, cmake/retort.cmake), else the one
/// the tests were built from.
inline std::filesystem::path source_dir() {
  if (const char* env = std::getenv("RETORT_SOURCE_DIR")) return env;
  return RETORT_SOURCE_DIR;
}

}  // namespace retort::test
