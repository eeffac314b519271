#pragma once
// ONNX files checked by real consumers (include as "tests/common/onnx.h"): onnx.checker
// (Debian's python3-onnx, tests/common/onnx_check.py) and ONNX Runtime (the npm package
// onnxruntime-node on node, tests/common/onnx_runtime.js).
//   if (auto why = onnx_runtime_missing(); !why.empty()) GTEST_SKIP() << why;
//   auto check = onnx_check(file);            // check.passed, check.declared["inputs"] ...
//   torch::Tensor logits = onnx_runtime_logits(file, x);
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "tests/common/paths.h"
#include "tests/common/shell.h"
#include "tests/common/temp_dir.h"

namespace retort::test {

/// The last line of `text` as JSON: what the helper scripts print last, after any warning
/// of the runtime or the checker.
inline nlohmann::json last_line_json(const std::string& text) {
  const size_t end = text.find_last_not_of('\n');
  const size_t start = text.rfind('\n', end);
  return nlohmann::json::parse(text.substr(start == std::string::npos ? 0 : start + 1));
}

/// The npm package onnxruntime-node: $RETORT_ONNXRUNTIME_DIR, else where
/// scripts/install-deps.sh puts it in the source tree.
inline std::filesystem::path onnx_runtime_dir() {
  if (const char* env = std::getenv("RETORT_ONNXRUNTIME_DIR")) return env;
  return source_dir() / "third_party" / "npm" / "node_modules" / "onnxruntime-node";
}

/// Why ONNX Runtime cannot run here, or "" when it can.
inline std::string onnx_runtime_missing() {
  const std::string hint = " (scripts/install-deps.sh installs it)";
  if (std::system("node --version > /dev/null 2>&1") != 0) return "node is not installed" + hint;
  if (!std::filesystem::exists(onnx_runtime_dir() / "package.json"))
    return "the npm package onnxruntime-node is not in " + onnx_runtime_dir().string() + hint;
  return "";
}

/// onnx.checker's verdict on an ONNX file and, when it passes, what the file declares
/// (onnx_check.py's JSON: inputs, outputs, opset, ir_version, metadata).
struct OnnxCheck {
  bool passed = false;
  std::string output;  ///< what the checker printed
  nlohmann::json declared;
};

inline OnnxCheck onnx_check(const std::filesystem::path& file) {
  const auto script = source_dir() / "tests" / "common" / "onnx_check.py";
  const auto run = run_shell("/usr/bin/python3 '" + script.string() + "' '" + file.string() + "'");
  OnnxCheck check{run.code == 0, run.out, nullptr};
  if (check.passed) check.declared = last_line_json(run.out);
  return check;
}

/// The "logits" ONNX Runtime computes for `input` (float32 or int64) fed as "input";
/// undefined after failing the test when the runtime fails.
inline torch::Tensor onnx_runtime_logits(const std::filesystem::path& model, const torch::Tensor& input) {
  const TempDir dir("onnx-runtime");
  const auto x = input.contiguous();
  write_file_atomic(dir / "input", std::string(static_cast<const char*>(x.data_ptr()), x.numel() * x.element_size()));
  std::string dims;
  for (int64_t d : x.sizes()) dims += (dims.empty() ? "" : ",") + std::to_string(d);
  const auto script = source_dir() / "tests" / "common" / "onnx_runtime.js";
  const auto run = run_shell("node '" + script.string() + "' '" + onnx_runtime_dir().string() + "' '" +
                             model.string() + "' '" + (dir / "input").string() + "' " +
                             (x.scalar_type() == torch::kLong ? "int64 " : "float32 ") + dims + " '" +
                             (dir / "logits").string() + "'");
  if (run.code != 0) {
    ADD_FAILURE() << "ONNX Runtime failed on " << model << ":\n" << run.out;
    return {};
  }
  const std::string bytes = read_file(dir / "logits");
  const auto shape = last_line_json(run.out).at("dims").get<std::vector<int64_t>>();
  auto logits = torch::empty(shape, torch::kFloat);
  EXPECT_EQ(bytes.size(), static_cast<size_t>(logits.numel()) * sizeof(float)) << "logits of " << model;
  std::memcpy(logits.data_ptr(), bytes.data(), std::min(bytes.size(), logits.numel() * sizeof(float)));
  return logits;
}

}  // namespace retort::test
