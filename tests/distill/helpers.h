#pragma once
// Shared by the tests/distill sources: golden data written by bench/reference/distill_golden.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "models/safetensors.h"
#include "tests/common/expect.h"
#include "tests/common/paths.h"

namespace retort::test {

inline const std::map<std::string, torch::Tensor>& golden_tensors() {
  static const auto file =
      models::load_safetensors(source_dir() / "tests" / "distill" / "data" / "distill_golden.safetensors");
  return file.tensors;
}

inline const torch::Tensor& golden(const std::string& name) {
  const auto& t = golden_tensors();
  auto it = t.find(name);
  if (it == t.end()) throw std::runtime_error("golden tensor '" + name + "' missing; rerun distill_golden.py");
  return it->second;
}

inline double golden_value(const std::string& name) {
  static const nlohmann::json j = [] {
    std::ifstream in(source_dir() / "tests" / "distill" / "data" / "distill_golden.json");
    return nlohmann::json::parse(in);
  }();
  return j.at("values").at(name).get<double>();
}

/// Tensors under `prefix` with the prefix removed (a model's weights in the golden file).
inline std::map<std::string, torch::Tensor> golden_group(const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : golden_tensors())
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  return out;
}


}  // namespace retort::test
