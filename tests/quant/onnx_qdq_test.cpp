// The QDQ ONNX graph of an int8 model (models/onnx_export.h with quant/),
// checked by real consumers for every family and both methods: onnx.checker
// passes, and ONNX Runtime's logits agree with retort's int8 logits, at batch
// sizes (and gpt lengths) calibration never saw.
#include <gtest/gtest.h>

#include <iostream>

#include "models/models.h"
#include "quant/quantize.h"
#include "tests/common/onnx.h"
#include "tests/common/onnx_cases.h"
#include "tests/common/temp_dir.h"

using namespace retort;
using namespace retort::test;

namespace {

class QdqExport : public testing::TestWithParam<std::tuple<ExportCase, quant::Method>> {};

}  // namespace

TEST_P(QdqExport, OnnxRuntimeComputesRetortsInt8Logits) {
  const auto& [c, method] = GetParam();
  auto model = random_model(c.options, 7);
  torch::manual_seed(11);
  std::vector<torch::Tensor> calibration;
  for (int i = 0; i < 3; ++i) calibration.push_back(inputs_for(c.options).back());
  quant::QuantOptions o;
  o.method = method;
  quant::attach(*model, quant::quantize(*model, o, calibration).layers);
  const TempDir dir("qdq-" + c.label);
  const auto file = dir / "model.onnx";
  models::save_onnx(file, *model, {});
  const auto check = onnx_check(file);
  ASSERT_TRUE(check.passed) << check.output;

  if (auto why = onnx_runtime_missing(); !why.empty()) GTEST_SKIP() << why;
  // Dynamic: the same arithmetic, to fp32's rounding. Static: the same too, but
  // a value on a rounding tie may requantize one step apart; allow two steps of
  // the coarsest output.
  double tolerance = 1e-4;
  for (const auto& l : model->int8_layers())
    if (l.output) tolerance = std::max(tolerance, 2 * l.output->scale + 1e-6);
  torch::manual_seed(3);
  for (const auto& x : inputs_for(c.options)) {
    torch::NoGradGuard no_grad;
    const auto expected = model->forward(x).logits;
    const auto got = onnx_runtime_logits(file, x);
    ASSERT_TRUE(got.defined());
    ASSERT_EQ(got.sizes(), expected.sizes());
    const double diff = (got - expected).abs().max().item<double>();
    std::cout << c.label << " " << config::enum_name(method) << " input " << x.sizes()
              << ": max |ONNX Runtime - retort| = " << diff << " (tolerance " << tolerance << ")\n";
    EXPECT_LE(diff, tolerance) << c.label << " input " << x.sizes();
  }
}

INSTANTIATE_TEST_SUITE_P(EveryFamily, QdqExport,
                         testing::Combine(testing::ValuesIn(export_cases()),
                                          testing::Values(quant::Method::kDynamic, quant::Method::kStatic)),
                         [](const auto& info) {
                           return std::get<0>(info.param).label + "_" + config::enum_name(std::get<1>(info.param));
                         });
