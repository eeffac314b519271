#pragma once
/// A whole file mapped read-only (mmap): its pages are read when touched, shared between
/// processes, never copied. Token files and teacher caches are read through it.
///   MappedFile f(path);             // Error("not found"), ("empty (0 bytes)"), ...
///   const unsigned char* p = f.data();  size_t n = f.size();
/// Errors say what went wrong without the path: callers name the file in their own terms
/// (and their own error type).
#include <cstddef>
#include <filesystem>

namespace retort {

class MappedFile {
 public:
  MappedFile() = default;
  /// Maps `path`. Error("not found" | "cannot open: ..." | "not a regular file" |
  /// "empty (0 bytes)" | "cannot map: ...").
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace retort
