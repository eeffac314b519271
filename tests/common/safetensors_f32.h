#pragma once
// A run's weights as the tests compare them (include as "tests/common/safetensors_f32.h"):
//   auto a = read_f32_tensors(dir / "checkpoints/step-00000020/model.safetensors");
//   EXPECT_LT(max_relative_diff(b, a), 1e-4);
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/fs.h"

namespace retort::test {

/// The float32 tensors of a safetensors file, by name (the format: an 8-byte little-endian
/// header length, a JSON header of dtype/shape/offsets, then the data).
inline std::map<std::string, std::vector<float>> read_f32_tensors(const std::filesystem::path& path) {
  const std::string bytes = retort::read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__" || info.at("dtype") != "F32") continue;
    const size_t begin = info.at("data_offsets")[0], end = info.at("data_offsets")[1];
    std::vector<float> v((end - begin) / 4);
    std::memcpy(v.data(), bytes.data() + 8 + n + begin, end - begin);
    out[name] = std::move(v);
  }
  return out;
}

/// Largest |a - b| of any tensor relative to that tensor's largest |b|.
inline double max_relative_diff(const std::map<std::string, std::vector<float>>& a,
                                const std::map<std::string, std::vector<float>>& b) {
  double worst = 0;
  for (const auto& [name, vb] : b) {
    const auto& va = a.at(name);
    EXPECT_EQ(va.size(), vb.size()) << name;
    double diff = 0, scale = 1e-30;
    for (size_t i = 0; i < vb.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::fabs(va[i] - vb[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(vb[i])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

}  // namespace retort::test
