// ONNX export (models/onnx_export.h) checked by real consumers: onnx.checker's full check
// passes, and ONNX Runtime computes retort's logits on the file, at batch sizes (and gpt
// lengths) the export never saw: there is no example input, every size is a run-time one.
#include <gtest/gtest.h>

#include <iostream>

#include "core/error.h"
#include "models/models.h"
#include "models/onnx_graph.h"
#include "tests/common/expect.h"
#include "tests/common/gpt.h"
#include "tests/common/onnx.h"
#include "tests/common/onnx_cases.h"
#include "tests/common/temp_dir.h"

using namespace retort;
using namespace retort::models;
using nlohmann::json;
using retort::test::TempDir;
using namespace retort::test;

namespace {

class OnnxExportFamily : public testing::TestWithParam<ExportCase> {};

}  // namespace

TEST_P(OnnxExportFamily, OnnxCheckerPassesAndOnnxRuntimeComputesRetortsLogits) {
  const auto& c = GetParam();
  auto model = random_model(c.options, 7);
  const TempDir dir("onnx-" + c.label);
  const auto file = dir / "model.onnx";
  save_onnx(file, *model, {{"retort.step", "12"}});

  const auto check = test::onnx_check(file);
  ASSERT_TRUE(check.passed) << check.output;
  const auto& declared = check.declared;
  const json logits_dims = c.options.language_model() ? json::array({"batch", "tokens", c.options.vocab_size})
                                                      : json::array({"batch", c.options.num_classes});
  const std::string input_type = c.options.language_model() ? "int64" : "float";
  EXPECT_EQ(declared["inputs"], json::array({{{"name", "input"}, {"type", input_type}, {"dims", c.input_dims}}}));
  EXPECT_EQ(declared["outputs"], json::array({{{"name", "logits"}, {"type", "float"}, {"dims", logits_dims}}}));
  EXPECT_EQ(declared["opset"], 17);
  EXPECT_EQ(declared["metadata"], json({{"retort.step", "12"}}));

  if (auto why = test::onnx_runtime_missing(); !why.empty()) GTEST_SKIP() << why;
  torch::manual_seed(3);
  for (const auto& x : inputs_for(c.options)) {
    torch::NoGradGuard no_grad;
    const auto expected = model->forward(x).logits;
    const auto got = test::onnx_runtime_logits(file, x);
    ASSERT_TRUE(got.defined());
    ASSERT_EQ(got.sizes(), expected.sizes()) << c.label << " input " << x.sizes();
    const double diff = (got - expected).abs().max().item<double>();
    std::cout << c.label << " input " << x.sizes() << ": max |ONNX Runtime - retort| = " << diff << "\n";
    EXPECT_LT(diff, 1e-4) << c.label << " input " << x.sizes();
  }
}

INSTANTIATE_TEST_SUITE_P(EveryFamily, OnnxExportFamily, testing::ValuesIn(export_cases()),
                         [](const testing::TestParamInfo<ExportCase>& info) { return info.param.label; });

TEST(OnnxExport, AFamilyWithoutAnEmitterIsNamedWithTheFamiliesExported) {
  auto o = image_model("toy", 1, 4, 3);  // an mlp under a name the exporter does not know
  o.hidden = {4};
  Mlp toy(o);
  test::expect_error<ConfigError>([&] { onnx_model_bytes(toy); }, {"model.name", "toy", "cnn, gpt, mlp, vit"});
  EXPECT_EQ(onnx_families(), (std::vector<std::string>{"cnn", "gpt", "mlp", "vit"}));
}

TEST(OnnxGraph, RefusesATakenNameAndAnUnsupportedDtypeNamingTheTensor) {
  OnnxGraph graph("g");
  graph.initializer("w", torch::zeros({2}));
  test::expect_error<Error>([&] { graph.initializer("w", torch::zeros({2})); }, {"'w'", "already"});
  test::expect_error<Error>([&] { graph.initializer("half", torch::zeros({2}, torch::kHalf)); },
                            {"'half'", "Half", "float32, int64, bool, int8 or uint8"});
}
