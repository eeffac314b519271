#pragma once
/// File-system helpers with the durability rules of the house: files are written to a
/// temporary name, fsync'ed, then renamed, so a reader never sees half a file.
///   retort::write_file_atomic(dir / "config.yaml", text);
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

namespace retort {

namespace fs = std::filesystem;

/// Reads a whole file; throws Error naming the path when it cannot.
std::string read_file(const fs::path& path);

/// Writes `data` to `path` atomically (tmp file in the same directory, fsync, rename,
/// fsync of the directory). Throws Error naming the path on failure.
void write_file_atomic(const fs::path& path, const std::string& data);

/// Writes and fsyncs a file in place (for files inside a not-yet-published directory).
void write_file_synced(const fs::path& path, const std::string& data);

/// fsync on a file or directory (directories: makes a rename durable).
void fsync_path(const fs::path& path);

/// Creates `dir` (and parents) and checks it is writable; throws Error with the path and
/// the reason otherwise.
void ensure_writable_dir(const fs::path& dir);

/// Removes `path` and, for a directory, everything under it (symbolic links are removed,
/// never followed); returns how many entries were removed, 0 when nothing was there. What
/// std::filesystem::remove_all does, through POSIX calls: the PyTorch wheels' LibTorch
/// (2.5 to 2.11 at least) exports its own static copy of libstdc++'s
/// recursive_directory_iterator, which remove_all of a newer libstdc++ then calls into and
/// crashes (PyTorch issue #133437; seen on the GPU machine, bench/RESULTS.md). Throws
/// Error naming the entry that could not be removed.
uintmax_t remove_tree(const fs::path& path);
/// As above; reports failure in `ec` instead of throwing.
uintmax_t remove_tree(const fs::path& path, std::error_code& ec) noexcept;

/// xxhash64 (seed 0) of a byte range, of a string, of a whole file.
uint64_t xxh64(const void* data, size_t size);
uint64_t xxh64(const std::string& data);
uint64_t xxh64_file(const fs::path& path);

/// 16 lower-case hex digits.
std::string hex64(uint64_t value);

}  // namespace retort
