#pragma once
// A run's logits outside retort, for the tests/e2e sources: its test split as
// its model reads it, ONNX Runtime's logits on an exported graph against the
// run's own, and accuracies as `retort eval` prints them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/run_config.h"
#include "data/data.h"
#include "tests/common/onnx.h"
#include "tests/e2e/helpers.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_model.h"

namespace retort::test {

namespace fs = std::filesystem;

/// The test split as the run's model reads it (its config with `overrides`),
/// and its labels: images normalized as the loader does ([N, C, H, W] float32),
/// or the validation windows ([N, context] int64).
inline std::pair<torch::Tensor, torch::Tensor> test_split(const fs::path& run,
                                                          const std::vector<std::string>& overrides = {}) {
  const auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(run));
  const auto rc = cli::checkpoint_run_config(ckpt, overrides);
  const auto split = data::load_dataset(rc.data, "test", cli::window_shape(rc));
  if (split.text) {
    std::vector<int64_t> windows(static_cast<size_t>(split.size()));
    std::iota(windows.begin(), windows.end(), 0);
    return split.text->batch(windows, /*epoch=*/0);
  }
  const auto stats = data::pixel_stats(rc.data.name);
  return {data::normalize(split.images, stats.mean, stats.stddev), split.labels};
}

/// The accuracy of `logits` on `labels` as eval prints it: percent, two
/// decimals.
inline std::string accuracy_as_printed(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto correct = logits.reshape({-1, logits.size(-1)}).argmax(1).eq(labels.flatten());
  std::ostringstream text;
  text << std::fixed << std::setprecision(2) << 100.0 * correct.to(torch::kDouble).mean().item<double>();
  return text.str();
}

/// ONNX Runtime on `onnx` against the run's own model (as eval loads it) for
/// each input: the whole test split first, then others (other batch sizes and
/// lengths), each within `tolerance`. Returns ONNX Runtime's logits of the
/// split.
inline torch::Tensor expect_onnx_runtime_computes_retorts_logits(const fs::path& run, const fs::path& onnx,
                                                                 const std::vector<torch::Tensor>& inputs,
                                                                 double tolerance = 1e-4) {
  const auto model = trainer::load_checkpoint_model(run).model;
  torch::NoGradGuard no_grad;
  torch::Tensor split_logits;
  for (const auto& x : inputs) {
    const auto expected = model->forward(x).logits;
    const auto got = test::onnx_runtime_logits(onnx, x);
    if (!got.defined()) return {};
    EXPECT_EQ(got.sizes(), expected.sizes());
    if (got.sizes() != expected.sizes()) return {};
    const double diff = (got - expected).abs().max().item<double>();
    std::cout << onnx.filename().string() << " input " << x.sizes() << ": max |ONNX Runtime - retort| = " << diff
              << " (tolerance " << tolerance << ")\n";
    EXPECT_LT(diff, tolerance) << "input " << x.sizes();
    if (!split_logits.defined()) split_logits = got;
  }
  return split_logits;
}

/// `retort eval <run> <overrides>`'s printed accuracy ("81.50"), after failing
/// the test when it fails.
inline std::string eval_accuracy(const fs::path& run, const std::string& overrides = "") {
  const auto eval = run_retort("eval " + run.string() + " " + overrides);
  EXPECT_EQ(eval.code, 0) << eval.out;
  const auto at = eval.out.find("accuracy ");
  if (at == std::string::npos) {
    ADD_FAILURE() << "no accuracy in: " << eval.out;
    return "";
  }
  return eval.out.substr(at + 9, eval.out.find(' ', at + 9) - at - 9);
}

}  // namespace retort::test
