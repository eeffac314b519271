#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "core/fs.h"

namespace fs = std::filesystem;
using namespace retort;

namespace {
fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("retort-core-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST(Fs, AtomicWriteRoundTripLeavesNoTemporaries) {
  auto d = temp_dir("atomic");
  write_file_atomic(d / "a.txt", "hello");
  write_file_atomic(d / "a.txt", "world!");  // replaces
  EXPECT_EQ(read_file(d / "a.txt"), "world!");
  int files = 0;
  for (auto& e : fs::directory_iterator(d)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  fs::remove_all(d);
}

TEST(Fs, ReadMissingFileNamesPath) {
  try {
    read_file("/nonexistent/retort/file.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/retort/file.txt"), std::string::npos);
  }
}

TEST(Fs, UnwritableDirectoryIsRefusedWithReason) {
  if (::geteuid() == 0) {
    // root ignores permission bits; a path below a regular file can never be created.
    auto d = temp_dir("unwritable");
    write_file_atomic(d / "file", "x");
    try {
      ensure_writable_dir(d / "file" / "sub");
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot create directory"), std::string::npos) << e.what();
    }
    fs::remove_all(d);
    return;
  }
  auto d = temp_dir("ro");
  ::chmod(d.c_str(), 0555);
  EXPECT_THROW(ensure_writable_dir(d / "x"), Error);
  ::chmod(d.c_str(), 0755);
  fs::remove_all(d);
}

TEST(Fs, Xxh64MatchesKnownVectorsAndFileHash) {
  // Reference values of XXH64 with seed 0 (xxHash's own test vectors).
  EXPECT_EQ(hex64(xxh64(std::string())), "ef46db3751d8e999");
  EXPECT_EQ(hex64(xxh64(std::string("a"))), "d24ec4f1a98c6e5b");
  auto d = temp_dir("hash");
  std::string big(3 << 20, 'x');  // spans several read chunks
  big[12345] = 'y';
  write_file_atomic(d / "big", big);
  EXPECT_EQ(xxh64_file(d / "big"), xxh64(big));
  fs::remove_all(d);
}

TEST(Errors, ExitCodes) {
  EXPECT_EQ(ConfigError("x").exit_code(), 2);
  EXPECT_EQ(UsageError("x").exit_code(), 2);
  EXPECT_EQ(DataError("x").exit_code(), 3);
  EXPECT_EQ(CheckpointError("x").exit_code(), 4);
  EXPECT_EQ(Error("x").exit_code(), 1);
}
