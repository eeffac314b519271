// `retort export <run> model.onnx` as a user runs it, on trained runs: ONNX Runtime's logits
// on the real test split (Fashion-MNIST images, README.md's tokens) equal retort's, and the
// accuracy they give over the whole split is the one `retort eval` prints.
#include <gtest/gtest.h>

#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>

#include "cli/run_config.h"
#include "data/data.h"
#include "tests/common/onnx.h"
#include "tests/common/temp_dir.h"
#include "tests/e2e/helpers.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_model.h"

using namespace retort;
using test::run_retort;
using test::TempDir;

namespace fs = std::filesystem;

namespace {

/// The test split as the run's model reads it, and its labels: images normalized as the
/// loader does ([N, C, H, W] float32), or the validation windows ([N, context] int64).
std::pair<torch::Tensor, torch::Tensor> test_split(const fs::path& run) {
  const auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(run));
  const auto rc = cli::checkpoint_run_config(ckpt, {});
  const auto split = data::load_dataset(rc.data, "test", cli::window_shape(rc));
  if (split.text) {
    std::vector<int64_t> windows(static_cast<size_t>(split.size()));
    std::iota(windows.begin(), windows.end(), 0);
    return split.text->batch(windows, /*epoch=*/0);
  }
  const auto stats = data::pixel_stats(rc.data.name);
  return {data::normalize(split.images, stats.mean, stats.stddev), split.labels};
}

/// The accuracy of `logits` on `labels` as eval prints it: percent, two decimals.
std::string accuracy_as_printed(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto correct = logits.reshape({-1, logits.size(-1)}).argmax(1).eq(labels.flatten());
  std::ostringstream text;
  text << std::fixed << std::setprecision(2) << 100.0 * correct.to(torch::kDouble).mean().item<double>();
  return text.str();
}

/// ONNX Runtime on `onnx` against the run's own model (as eval loads it) for each input:
/// the whole test split first, then `more` (other batch sizes and lengths). Returns ONNX
/// Runtime's logits of the split.
torch::Tensor expect_onnx_runtime_computes_retorts_logits(const fs::path& run, const fs::path& onnx,
                                                          const std::vector<torch::Tensor>& inputs) {
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
              << "\n";
    EXPECT_LT(diff, 1e-4) << "input " << x.sizes();
    if (!split_logits.defined()) split_logits = got;
  }
  return split_logits;
}

/// `retort eval <run>`'s printed accuracy ("81.50"), after failing the test when it fails.
std::string eval_accuracy(const fs::path& run) {
  const auto eval = run_retort("eval " + run.string());
  EXPECT_EQ(eval.code, 0) << eval.out;
  const auto at = eval.out.find("accuracy ");
  if (at == std::string::npos) {
    ADD_FAILURE() << "no accuracy in: " << eval.out;
    return "";
  }
  return eval.out.substr(at + 9, eval.out.find(' ', at + 9) - at - 9);
}

}  // namespace

TEST(Cli, OnnxExportOfATrainedCnnScoresInOnnxRuntimeAsEvalDoes) {
  if (!test::has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  if (auto why = test::onnx_runtime_missing(); !why.empty()) GTEST_SKIP() << why;
  const TempDir dir("onnx-cnn");
  const auto run = dir / "run", onnx = dir / "model.onnx";
  const auto trained = run_retort("train " + test::kRecipe + test::kSmall + "run.dir=" + run.string());
  ASSERT_EQ(trained.code, 0) << trained.out;
  const auto refused = run_retort("export " + run.string() + " " + (dir / "model.onnx.txt").string());
  EXPECT_EQ(refused.code, 2) << refused.out;
  EXPECT_FALSE(fs::exists(dir / "model.onnx.txt"));
  const auto exported = run_retort("export " + run.string() + " " + onnx.string());
  ASSERT_EQ(exported.code, 0) << exported.out;
  EXPECT_NE(exported.out.find("ONNX opset 17, input float32 [batch, 1, 28, 28] = (pixel / 255 - 0.286) / 0.353 -> "
                              "logits [batch, 10] float32"),
            std::string::npos)
      << exported.out;
  const auto check = test::onnx_check(onnx);
  ASSERT_TRUE(check.passed) << check.output;
  EXPECT_EQ(check.declared["metadata"]["retort.step"], "6");

  const auto [images, labels] = test_split(run);  // data.subset=600: the first 600 test images
  ASSERT_EQ(images.size(0), 600);
  const auto logits = expect_onnx_runtime_computes_retorts_logits(run, onnx, {images, images.narrow(0, 7, 1)});
  ASSERT_TRUE(logits.defined());
  EXPECT_EQ(accuracy_as_printed(logits, labels), eval_accuracy(run));
}

TEST(Cli, OnnxExportOfATrainedGptScoresInOnnxRuntimeAsEvalDoes) {
  if (auto why = test::onnx_runtime_missing(); !why.empty()) GTEST_SKIP() << why;
  const TempDir dir("onnx-gpt");
  const auto tokens = dir / "tokens", run = dir / "run", onnx = dir / "model.onnx";
  ASSERT_EQ(run_retort("tokenize README.md " + tokens.string()).code, 0);
  const auto trained = run_retort(
      "train recipes/text/lm_teacher.yaml model=gpt_student model.context=32 model.dim=32 model.depth=2 "
      "model.heads=2 data.subset=64 data.batch_size=16 trainer.max_steps=8 trainer.threads=1 data.eval_tokens=1024 "
      "amp.mode=off data.root=" + tokens.string() + " run.dir=" + run.string());
  ASSERT_EQ(trained.code, 0) << trained.out;
  const auto exported = run_retort("export " + run.string() + " " + onnx.string());
  ASSERT_EQ(exported.code, 0) << exported.out;
  EXPECT_NE(exported.out.find("input int64 [batch, tokens <= 32] -> logits [batch, tokens, 256] float32"),
            std::string::npos)
      << exported.out;
  ASSERT_TRUE(test::onnx_check(onnx).passed);

  const auto [windows, next_tokens] = test_split(run);  // data.eval_tokens=1024: 32 windows of 32
  ASSERT_EQ(windows.sizes(), (std::vector<int64_t>{32, 32}));
  // Besides the split: 3 windows cut to 11 tokens, a batch and a length used nowhere else.
  const auto short_windows = windows.narrow(0, 5, 3).narrow(1, 0, 11).contiguous();
  const auto logits = expect_onnx_runtime_computes_retorts_logits(run, onnx, {windows, short_windows});
  ASSERT_TRUE(logits.defined());
  EXPECT_EQ(accuracy_as_printed(logits, next_tokens), eval_accuracy(run));
}

TEST(Cli, ExportToAnUnknownExtensionIsRefusedInOneLineAndWritesNothing) {
  const TempDir dir("export-ext");
  const auto out = dir / "model.pt";
  // A run that does not exist: the extension is refused before anything is read.
  const auto r = run_retort("export /nonexistent/run " + out.string());
  EXPECT_EQ(r.code, 2) << r.out;
  const std::string refused =
      "export: '" + out.string() + "': unknown extension '.pt'; the formats are .safetensors and .onnx";
  EXPECT_NE(r.out.find(refused), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one line: " << r.out;
  EXPECT_TRUE(fs::is_empty(dir.path()));
  const auto bare = run_retort("export /nonexistent/run " + (dir / "model").string());
  EXPECT_EQ(bare.code, 2) << bare.out;
  EXPECT_NE(bare.out.find("unknown extension ''"), std::string::npos) << bare.out;
  EXPECT_TRUE(fs::is_empty(dir.path()));
}
