#include "core/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "core/error.h"

namespace retort {
namespace {

std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const std::string& data, const fs::path& path) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write '" + path.string() + "': " + errno_text());
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

/// remove_tree's walk, depth first; stops at the first failure, naming it in `failed`.
/// An entry that vanishes meanwhile (another process removing it) is not a failure.
uintmax_t remove_entry(const std::string& path, std::error_code& ec, std::string& failed) {
  const auto fail = [&] {
    ec.assign(errno, std::generic_category());
    failed = path;
  };
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) fail();
    return 0;
  }
  uintmax_t removed = 0;
  if (S_ISDIR(st.st_mode)) {
    std::vector<std::string> names;
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) {
      if (errno != ENOENT) fail();
      return 0;
    }
    while (const dirent* e = ::readdir(dir)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
    }
    ::closedir(dir);
    for (const auto& name : names) {
      removed += remove_entry(path + "/" + name, ec, failed);
      if (ec) return removed;
    }
    if (::rmdir(path.c_str()) != 0) {
      if (errno != ENOENT) fail();
      return removed;
    }
  } else if (::unlink(path.c_str()) != 0) {
    if (errno != ENOENT) fail();
    return removed;
  }
  return removed + 1;
}

}  // namespace

uintmax_t remove_tree(const fs::path& path, std::error_code& ec) noexcept {
  ec.clear();
  std::string failed;
  try {
    return remove_entry(path.string(), ec, failed);
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return 0;
  }
}

uintmax_t remove_tree(const fs::path& path) {
  std::error_code ec;
  std::string failed;
  const uintmax_t removed = remove_entry(path.string(), ec, failed);
  if (ec) throw Error("cannot remove '" + failed + "' (removing '" + path.string() + "'): " + ec.message());
  return removed;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path.string() + "': " + errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read '" + path.string() + "'");
  return ss.str();
}

void write_file_synced(const fs::path& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot create '" + path.string() + "': " + errno_text());
  try {
    write_all(fd, data, path);
    if (::fsync(fd) != 0) throw Error("cannot fsync '" + path.string() + "': " + errno_text());
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) throw Error("cannot close '" + path.string() + "': " + errno_text());
}

void fsync_path(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open '" + path.string() + "' to sync: " + errno_text());
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0 && errno != EINVAL) throw Error("cannot fsync '" + path.string() + "': " + errno_text());
}

void write_file_atomic(const fs::path& path, const std::string& data) {
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::random_device rd;
  fs::path tmp = dir / ("." + path.filename().string() + ".tmp" + std::to_string(rd()));
  try {
    write_file_synced(tmp, data);
    fs::rename(tmp, path);
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error("cannot write '" + path.string() + "': " + e.code().message());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(dir);
}

void ensure_writable_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create directory '" + dir.string() + "': " + ec.message());
  if (!fs::is_directory(dir)) throw Error("'" + dir.string() + "' exists and is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw Error("directory '" + dir.string() + "' is not writable: " + errno_text());
}

uint64_t xxh64(const void* data, size_t size) { return XXH64(data, size, 0); }
uint64_t xxh64(const std::string& data) { return XXH64(data.data(), data.size(), 0); }

uint64_t xxh64_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path.string() + "': " + errno_text());
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(&buf[0], static_cast<std::streamsize>(buf.size()));
    XXH64_update(st, buf.data(), static_cast<size_t>(in.gcount()));
  }
  uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  return h;
}

std::string hex64(uint64_t value) {
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(value));
  return out;
}

}  // namespace retort
