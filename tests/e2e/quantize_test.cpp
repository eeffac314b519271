// `retort quantize` as a user runs it, on trained runs: the int8 run directory,
// its test accuracy beside the fp32 run's, its int8 safetensors, and its QDQ
// ONNX graph run by ONNX Runtime, whose accuracy over the split is within 0.1
// points of `retort eval`'s.
#include <gtest/gtest.h>

#include "core/fs.h"
#include "models/safetensors.h"
#include "tests/common/temp_dir.h"
#include "tests/e2e/helpers.h"
#include "tests/e2e/run_logits.h"

using namespace retort;
using namespace retort::test;

namespace fs = std::filesystem;

namespace {

fs::path weights_file(const fs::path& run) { return trainer::Checkpointer::resolve(run) / "model.safetensors"; }

/// ONNX Runtime's accuracy on the run's QDQ graph over the whole test split
/// (`overrides` undo the run's data.subset) against the one `retort eval`
/// prints for the int8 run, within 0.1 points; the logits within 1 % of
/// retort's largest or two steps of the coarsest requantized output.
/// (Quantization turns fp32's rounding differences into a step of some
/// activation now and then: a near-tie may flip, hence points, not equality.)
void expect_onnx_runtime_scores_as_eval(const fs::path& run, const fs::path& onnx, const std::string& overrides) {
  const auto check = onnx_check(onnx);
  ASSERT_TRUE(check.passed) << check.output;
  const auto [inputs, labels] = test_split(run, {overrides});
  double tolerance = 0;
  {
    const auto model = trainer::load_checkpoint_model(run).model;
    torch::NoGradGuard no_grad;
    tolerance = 0.01 * model->forward(inputs).logits.abs().max().item<double>();
    for (const auto& l : model->int8_layers())
      if (l.output) tolerance = std::max(tolerance, 2 * l.output->scale);
  }
  const auto logits = expect_onnx_runtime_computes_retorts_logits(run, onnx, {inputs}, tolerance);
  ASSERT_TRUE(logits.defined());
  EXPECT_NEAR(std::stod(accuracy_as_printed(logits, labels)), std::stod(eval_accuracy(run, overrides)), 0.1);
}

/// Trained long enough that its logits are no coin toss (kSmall's 6 steps leave
/// 25 %).
const std::string kTrained = " data.subset=600 data.batch_size=64 trainer.max_steps=60 trainer.threads=1 ";

}  // namespace

TEST(Cli, QuantizeACnnRunStaticallyAndDynamically) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir dir("quantize-cnn");
  const auto run = dir / "run", dynamic = dir / "dynamic", stat = dir / "static";
  const auto trained = run_retort("train " + kRecipe + kTrained + "run.dir=" + run.string());
  ASSERT_EQ(trained.code, 0) << trained.out;

  const auto q = run_retort("quantize " + run.string() +
                            " quant.method=static quant.calibration=entropy quant.batches=3 run.dir=" + stat.string());
  ASSERT_EQ(q.code, 0) << q.out;
  EXPECT_NE(q.out.find("static, entropy on 192 training samples"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("| stage0.conv0 | conv2d | int8 [16, 1, 3, 3] per output channel | uint8, ranged on "
                       "calibration |"),
            std::string::npos)
      << q.out;
  EXPECT_EQ(read_file(stat / "quantize.md"), q.out.substr(0, q.out.find("wrote ")));
  const auto stored = models::load_safetensors(weights_file(stat)).tensors;
  EXPECT_EQ(stored.at("fc0.weight").scalar_type(), torch::kInt8);
  EXPECT_EQ(stored.at("fc0.input_zero_point").scalar_type(), torch::kUInt8);
  EXPECT_LT(fs::file_size(weights_file(stat)), 0.3 * static_cast<double>(fs::file_size(weights_file(run))));
  EXPECT_NEAR(std::stod(eval_accuracy(stat)), std::stod(eval_accuracy(run)), 2.0);

  const auto d = run_retort("quantize " + run.string() + " quant.method=dynamic run.dir=" + dynamic.string());
  ASSERT_EQ(d.code, 0) << d.out;
  EXPECT_NE(d.out.find("| stage0.conv0 | | fp32: a convolution: dynamic quantization covers linear layers"),
            std::string::npos)
      << d.out;
  EXPECT_NEAR(std::stod(eval_accuracy(dynamic)), std::stod(eval_accuracy(run)), 2.0);

  // Exports: int8 safetensors as stored, the QDQ graph ONNX Runtime runs.
  ASSERT_EQ(run_retort("export " + stat.string() + " " + (dir / "int8.safetensors").string()).code, 0);
  EXPECT_EQ(models::load_safetensors(dir / "int8.safetensors").tensors.at("head.weight").scalar_type(), torch::kInt8);
  if (auto why = onnx_runtime_missing(); !why.empty()) GTEST_SKIP() << why;
  for (const auto& int8 : {stat, dynamic}) {
    const auto onnx = dir / (int8.filename().string() + ".onnx");
    const auto exported = run_retort("export " + int8.string() + " " + onnx.string());
    ASSERT_EQ(exported.code, 0) << exported.out;
    EXPECT_NE(exported.out.find("int8 layers in QDQ form"), std::string::npos) << exported.out;
    expect_onnx_runtime_scores_as_eval(int8, onnx, "data.subset=0");  // all 10,000 test images
  }
}

TEST(Cli, QuantizeAGptRunDynamicallyAndServeItWithOnnxRuntime) {
  const TempDir dir("quantize-gpt");
  const auto tokens = dir / "tokens", run = dir / "run", int8 = dir / "int8", onnx = dir / "int8.onnx";
  ASSERT_EQ(run_retort("tokenize README.md " + tokens.string()).code, 0);
  const auto trained = run_retort(
      "train recipes/text/lm_teacher.yaml model=gpt_student model.context=32 model.dim=32 model.depth=2 "
      "model.heads=2 data.subset=64 data.batch_size=16 trainer.max_steps=8 trainer.threads=1 data.eval_tokens=1024 "
      "amp.mode=off data.root=" +
      tokens.string() + " run.dir=" + run.string());
  ASSERT_EQ(trained.code, 0) << trained.out;
  const auto q = run_retort("quantize " + run.string() + " quant.method=dynamic run.dir=" + int8.string());
  ASSERT_EQ(q.code, 0) << q.out;
  EXPECT_NE(q.out.find("| transformer.h.0.attn.c_attn | conv1d (GPT-2) | int8 [32, 96] per output channel"),
            std::string::npos)
      << q.out;
  const auto exported = run_retort("export " + int8.string() + " " + (dir / "int8.safetensors").string());
  ASSERT_EQ(exported.code, 0) << exported.out;
  EXPECT_FALSE(fs::exists(dir / "config.json")) << "GPT-2's loader would take int8 values for weights";
  if (auto why = onnx_runtime_missing(); !why.empty()) GTEST_SKIP() << why;
  ASSERT_EQ(run_retort("export " + int8.string() + " " + onnx.string()).code, 0);
  expect_onnx_runtime_scores_as_eval(int8, onnx, "data.eval_tokens=0");  // every validation window
}

TEST(Cli, QuantizeRefusesBadInputInOneLineAndWritesNothing) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir dir("quantize-bad");
  const auto run = dir / "run", int8 = dir / "int8", out = dir / "out";
  ASSERT_EQ(run_retort("train " + kRecipe + kSmall + "run.dir=" + run.string()).code, 0);
  ASSERT_EQ(run_retort("quantize " + run.string() + " run.dir=" + int8.string()).code, 0);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {int8.string(), "holds an int8 model already"},
      {run.string() + " quant.method=dynamc", "did you mean 'dynamic'"},
      {run.string() + " quant.calibration=kl", "quant.calibration"},
      {run.string() + " quant.method=static quant.batches=0", "quant.batches"},
      {run.string() + " quant.skip=[haed]", "did you mean 'head'"},
  };
  for (const auto& [args, needle] : cases) {
    const auto r = run_retort("quantize " + args + " run.dir=" + out.string());
    EXPECT_EQ(r.code, 2) << args << ": " << r.out;
    EXPECT_NE(r.out.find(needle), std::string::npos) << args << ": " << r.out;
    EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one line: " << r.out;
    EXPECT_FALSE(fs::exists(out)) << args;
  }
}
