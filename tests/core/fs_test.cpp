#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "tests/common/temp_dir.h"

using retort::test::TempDir;

namespace fs = std::filesystem;
using namespace retort;

TEST(Fs, AtomicWriteRoundTripLeavesNoTemporaries) {
  const TempDir d("atomic");
  write_file_atomic(d / "a.txt", "hello");
  write_file_atomic(d / "a.txt", "world!");  // replaces
  EXPECT_EQ(read_file(d / "a.txt"), "world!");
  int files = 0;
  for (auto& e : fs::directory_iterator(d)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
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
    const TempDir d("unwritable");
    write_file_atomic(d / "file", "x");
    try {
      ensure_writable_dir(d / "file" / "sub");
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot create directory"), std::string::npos) << e.what();
    }
    retort::remove_tree(d);
    return;
  }
  const TempDir d("ro");
  ::chmod(d.path().c_str(), 0555);
  EXPECT_THROW(ensure_writable_dir(d / "x"), Error);
  ::chmod(d.path().c_str(), 0755);
}

TEST(Fs, Xxh64MatchesKnownVectorsAndFileHash) {
  // Reference values of XXH64 with seed 0 (xxHash's own test vectors).
  EXPECT_EQ(hex64(xxh64(std::string())), "ef46db3751d8e999");
  EXPECT_EQ(hex64(xxh64(std::string("a"))), "d24ec4f1a98c6e5b");
  const TempDir d("hash");
  std::string big(3 << 20, 'x');  // spans several read chunks
  big[12345] = 'y';
  write_file_atomic(d / "big", big);
  EXPECT_EQ(xxh64_file(d / "big"), xxh64(big));
}

TEST(Errors, ExitCodes) {
  EXPECT_EQ(ConfigError("x").exit_code(), 2);
  EXPECT_EQ(UsageError("x").exit_code(), 2);
  EXPECT_EQ(DataError("x").exit_code(), 3);
  EXPECT_EQ(CheckpointError("x").exit_code(), 4);
  EXPECT_EQ(Error("x").exit_code(), 1);
}

TEST(Fs, RemoveTreeRemovesEverythingBelowAndNeverFollowsLinks) {
  const TempDir d("tree");
  const TempDir outside("tree-outside");
  write_file_atomic(outside / "keep.txt", "not ours");
  fs::create_directories(d / "a" / "b" / "c");
  write_file_atomic(d / "top.txt", "1");
  write_file_atomic(d / "a" / "b" / "c" / "deep.bin", std::string(100000, 'x'));
  fs::create_directory(d / "empty");
  fs::create_directory_symlink(outside, d / "a" / "link-to-outside");
  fs::create_symlink(d / "nowhere", d / "dangling");
  // d, top.txt, a, a/b, a/b/c, deep.bin, empty, the two links
  EXPECT_EQ(remove_tree(d), 9u);
  EXPECT_FALSE(fs::exists(fs::symlink_status(d)));
  EXPECT_EQ(read_file(outside / "keep.txt"), "not ours");  // the link went, not its target
  EXPECT_EQ(remove_tree(outside / "keep.txt"), 1u);  // a single file
  EXPECT_EQ(remove_tree(outside / "keep.txt"), 0u);  // nothing there: not an error
  std::error_code ec;
  EXPECT_EQ(remove_tree(outside, ec), 1u);
  EXPECT_FALSE(ec);
}

TEST(Fs, RemoveTreeNamesWhatItCouldNotRemove) {
  // /proc entries cannot be unlinked, not even by root.
  if (!fs::exists("/proc/self/status")) GTEST_SKIP() << "no /proc";
  std::error_code ec;
  EXPECT_EQ(remove_tree("/proc/self/status", ec), 0u);
  EXPECT_TRUE(ec);
  try {
    remove_tree("/proc/self/status");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot remove '/proc/self/status'"), std::string::npos) << e.what();
  }
}
