// `retort export <run> model.onnx` as a user runs it, on trained runs: ONNX Runtime's logits
// on the real test split (Fashion-MNIST images, README.md's tokens) equal retort's, and the
// accuracy they give over the whole split is the one `retort eval` prints.
#include <gtest/gtest.h>

#include <iostream>

#include "tests/common/onnx.h"
#include "tests/common/temp_dir.h"
#include "tests/e2e/helpers.h"
#include "tests/e2e/run_logits.h"

using namespace retort;
using namespace retort::test;

namespace fs = std::filesystem;

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
