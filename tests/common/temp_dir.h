#pragma once
// The one scratch-folder helper of the tests (include as "tests/common/temp_dir.h").
//   TempDir dir("resume");                 // $TMPDIR/retort-resume-<pid>-<n>, fresh and empty
//   dir.write("recipes/a.yaml", "x: 1");   // creates folders, returns the full path
//   run(dir / "out");  train(dir);         // a path wherever one is expected
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/fs.h"

namespace retort::test {

/// A fresh folder for one test, removed with everything in it at scope exit (kept when
/// RETORT_KEEP_TEST_DIRS is set, to look at what a failing test wrote). With create false
/// only the path is reserved: for a program that must create it (or must not).
class TempDir {
 public:
  explicit TempDir(const std::string& name = "test", bool create = true) {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("retort-" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    retort::remove_tree(path_);
    if (create) std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    if (std::getenv("RETORT_KEEP_TEST_DIRS")) return;
    std::error_code ec;
    retort::remove_tree(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  operator const std::filesystem::path&() const { return path_; }  // NOLINT(google-explicit-constructor)
  std::filesystem::path operator/(const std::filesystem::path& relative) const { return path_ / relative; }
  std::string string() const { return path_.string(); }

  /// Writes `text` to path()/relative, creating its folders; returns the full path.
  std::filesystem::path write(const std::string& relative, const std::string& text) const {
    const auto file = path_ / relative;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << text;
    return file;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace retort::test
