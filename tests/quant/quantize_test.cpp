// Post-training int8 quantization (quant/quantize.h, quant/kernels.h): the
// kernels against an exact emulation of their arithmetic, layers found in every
// family, what stays fp32 and why, a quantized model's forward and its round
// trip through a checkpoint's tensors.
#include <gtest/gtest.h>

#include "amp/ops.h"
#include "core/error.h"
#include "models/models.h"
#include "quant/kernels.h"
#include "quant/quantize.h"
#include "tests/common/expect.h"
#include "tests/common/gpt.h"
#include "tests/common/onnx_cases.h"

using namespace retort;
using namespace retort::quant;
using retort::test::random_model;

namespace {

models::ModelOptions small_cnn() {
  models::ModelOptions o;
  o.name = "cnn";
  o.image_size = 12;
  o.channels = {4, 6};
  o.hidden = {12};
  return o;
}

std::vector<torch::Tensor> image_batches(const models::ModelOptions& o, int64_t n) {
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(torch::randn({8, o.in_channels, o.image_size, o.image_size}));
  return out;
}

/// quint8 quantize-dequantize, as the kernels' contract says: real = scale * (q
/// - zero_point).
torch::Tensor fake_quant(const torch::Tensor& x, const models::Affine8& a) {
  auto q = torch::clamp(torch::round(x.to(torch::kDouble) / a.scale) + a.zero_point, 0, 255);
  return (q - a.zero_point) * a.scale;
}

models::Int8Layer int8_layer(const torch::Tensor& w, amp::LayerOp op) {
  models::Int8Layer l;
  l.name = "layer";
  l.op = op;
  auto q = quantize_weight(w, l.axis());
  l.values = q.values;
  l.scale = q.scale;
  return l;
}

amp::LayerCall call_of(amp::LayerOp op, const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  amp::LayerCall c;
  c.op = op;
  c.x = x;
  c.weight = w;
  c.bias = b;
  if (op == amp::LayerOp::kConv2d) c.stride = {1}, c.padding = {1}, c.dilation = {1};
  return c;
}

}  // namespace

TEST(Int8Weight, IsSymmetricPerOutputChannelWithinHalfAStep) {
  torch::manual_seed(0);
  auto w = torch::randn({5, 7});
  w[2].zero_();
  const auto q = quantize_weight(w, 0);
  EXPECT_EQ(q.values.scalar_type(), torch::kInt8);
  EXPECT_EQ(q.scale.sizes(), torch::IntArrayRef({5, 1}));
  EXPECT_EQ(q.values.abs().amax(1).to(torch::kLong)[0].item<int64_t>(),
            127);  // each channel's max |w| -> 127
  EXPECT_EQ(q.values[2].abs().sum().item<int64_t>(), 0);
  EXPECT_EQ(q.scale[2].item<float>(), 1.0f);  // an all-zero channel
  const auto error = (q.values.to(torch::kFloat) * q.scale - w).abs();
  EXPECT_TRUE((error <= q.scale / 2 + 1e-7).all().item<bool>());
  const auto conv1d = quantize_weight(w.t(), 1);  // GPT-2's Conv1D: [in, out], channels along axis 1
  EXPECT_EQ(conv1d.scale.sizes(), torch::IntArrayRef({1, 5}));
  EXPECT_TRUE(torch::equal(conv1d.values, q.values.t()));
}

TEST(Int8Kernels, StaticLinearAndConvolutionComputeTheirQuantizedArithmetic) {
  use_engine(Engine::kAuto);
  torch::manual_seed(1);
  const models::Affine8 in{0.02, 128}, out{0.05, 120};
  for (auto op : {amp::LayerOp::kLinear, amp::LayerOp::kConv1D, amp::LayerOp::kConv2d}) {
    const bool conv = op == amp::LayerOp::kConv2d;
    auto w = conv ? torch::randn({6, 3, 3, 3}) * 0.3 : torch::randn({6, 16}) * 0.3;
    if (op == amp::LayerOp::kConv1D) w = w.t().contiguous();
    auto b = torch::randn({6}) * 0.1;
    auto x = conv ? torch::randn({2, 3, 5, 5}) : torch::randn({9, 16});
    auto layer = int8_layer(w, op);
    layer.input = in, layer.output = out;
    const auto call = call_of(op, x, w, b);
    const auto got = make_kernel(layer, call)->run(call);
    // The emulation: the input and the weight as their int8 values stand for,
    // exact products and sums, the result requantized.
    auto emulated_call = call_of(op, fake_quant(x, in).to(torch::kFloat), layer.dequantized(), b);
    const auto expected = fake_quant(fp32_layer(emulated_call), out).to(torch::kFloat);
    const double step = out.scale;
    const auto diff = (got - expected).abs();
    EXPECT_LE(diff.max().item<double>(), step + 1e-6) << "op " << static_cast<int>(op);  // a tie rounded apart
    EXPECT_GT((diff < 1e-6).to(torch::kFloat).mean().item<double>(), 0.97) << "op " << static_cast<int>(op);
    const double fp32_gap = (fp32_layer(call) - got).abs().max().item<double>();
    EXPECT_GT(fp32_gap, step / 4) << "the kernel computed in fp32";
  }
}

TEST(Int8Kernels, DynamicLinearRangesEachInputAsItComes) {
  use_engine(Engine::kAuto);
  torch::manual_seed(2);
  auto w = torch::randn({8, 32}) * 0.2, b = torch::randn({8});
  const auto layer = int8_layer(w, amp::LayerOp::kLinear);
  for (double spread : {0.1, 10.0}) {  // the input's own range sets its scale, whatever it is
    auto x = torch::randn({5, 32}) * spread;
    const auto call = call_of(amp::LayerOp::kLinear, x, w, b);
    const auto got = make_kernel(layer, call)->run(call);
    const double lo = std::min(0.0, x.min().item<double>()), hi = std::max(0.0, x.max().item<double>());
    const models::Affine8 a{(hi - lo) / 255, static_cast<int64_t>(std::round(-lo / ((hi - lo) / 255)))};
    const auto expected =
        fp32_layer(call_of(amp::LayerOp::kLinear, fake_quant(x, a).to(torch::kFloat), layer.dequantized(), b));
    const double scale = expected.abs().max().item<double>();
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-4 * scale) << "spread " << spread;
    EXPECT_GT((got - fp32_layer(call)).abs().max().item<double>(), 1e-4 * scale) << "the kernel computed in fp32";
  }
}

TEST(Int8Kernels, RefuseAnInputThatWantsAGradient) {
  use_engine(Engine::kAuto);
  auto w = torch::randn({4, 6});
  const auto layer = int8_layer(w, amp::LayerOp::kLinear);
  auto call = call_of(amp::LayerOp::kLinear, torch::randn({2, 6}, torch::requires_grad()), w, {});
  test::expect_error<Error>([&] { make_kernel(layer, call)->run(call); }, {"int8 layer layer", "no gradient"});
}

TEST(Quantize, FindsEachFamilysLayersAndHowTheModelCallsThem) {
  auto cnn = random_model(small_cnn(), 0);
  const auto layers = find_layers(*cnn);
  std::vector<std::string> names;
  for (const auto& [name, call] : layers) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"fc0.weight", "head.weight", "stage0.conv0.weight", "stage0.conv1.weight",
                                             "stage1.conv0.weight", "stage1.conv1.weight"}));
  EXPECT_EQ(layers.at("stage0.conv0.weight").op, amp::LayerOp::kConv2d);
  EXPECT_EQ(layers.at("stage0.conv0.weight").padding, std::vector<int64_t>({1}));
  EXPECT_EQ(layers.at("head.weight").op, amp::LayerOp::kLinear);
  EXPECT_TRUE(layers.at("head.weight").bias.defined());

  auto gpt = random_model(test::gpt_options(), 0);
  const auto gpt_layers = find_layers(*gpt);
  EXPECT_EQ(gpt_layers.at("transformer.h.0.attn.c_attn.weight").op, amp::LayerOp::kConv1D);
  EXPECT_EQ(gpt_layers.at("transformer.h.1.mlp.c_proj.weight").op, amp::LayerOp::kConv1D);
  EXPECT_EQ(gpt_layers.at("transformer.wte.weight").op,
            amp::LayerOp::kLinear);  // the tied output projection
  EXPECT_FALSE(gpt_layers.at("transformer.wte.weight").bias.defined());
  EXPECT_EQ(gpt_layers.count("transformer.wpe.weight"),
            0u);  // looked up, never multiplied
  EXPECT_EQ(gpt_layers.size(), 2u * 4u + 1u);
}

TEST(Quantize, DynamicLeavesConvolutionsAndSkippedLayersInFp32SayingWhy) {
  auto cnn = random_model(small_cnn(), 0);
  QuantOptions o;
  o.skip = {"head"};
  const auto q = quantize(*cnn, o, {});
  ASSERT_EQ(q.layers.size(), 1u);
  EXPECT_EQ(q.layers[0].name, "fc0");
  EXPECT_FALSE(q.layers[0].input.has_value());
  ASSERT_EQ(q.kept.size(), 5u);
  for (const auto& k : q.kept) {
    if (k.name == "head")
      EXPECT_EQ(k.why, "in quant.skip");
    else
      EXPECT_NE(k.why.find("convolution"), std::string::npos) << k.name << ": " << k.why;
  }
  EXPECT_FALSE(cnn->quantized());  // quantize() leaves the model as it was
}

TEST(Quantize, RefusesAnUnknownSkipNameStaticWithoutBatchesAndAnInt8Model) {
  auto cnn = random_model(small_cnn(), 0);
  QuantOptions o;
  o.skip = {"haed"};
  test::expect_error<ConfigError>([&] { quantize(*cnn, o, {}); }, {"quant.skip", "'haed'", "did you mean 'head'"});
  o.skip = {};
  o.method = Method::kStatic;
  test::expect_error<ConfigError>([&] { quantize(*cnn, o, {}); }, {"quant.batches"});
  attach(*cnn, quantize(*cnn, QuantOptions{}, {}).layers);
  test::expect_error<ConfigError>([&] { quantize(*cnn, QuantOptions{}, {}); }, {"int8 already"});
}

TEST(Quantize, AStaticCnnRunsInt8CloseToFp32AndRoundTripsThroughItsTensors) {
  const auto options = small_cnn();
  auto model = random_model(options, 3);
  torch::manual_seed(4);
  const auto x = torch::randn({16, 1, 12, 12});
  torch::NoGradGuard no_grad;
  const auto fp32 = model->forward(x).logits;
  QuantOptions o;
  o.method = Method::kStatic;
  const auto q = quantize(*model, o, image_batches(options, 4));
  ASSERT_EQ(q.layers.size(), 6u);
  attach(*model, q.layers);
  ASSERT_TRUE(model->quantized());
  const auto int8 = model->forward(x).logits;
  const double range = fp32.abs().max().item<double>();
  EXPECT_LT((int8 - fp32).abs().max().item<double>(), 0.1 * range);
  EXPECT_GT((int8 - fp32).abs().max().item<double>(), 0.0);

  const auto tensors = models::int8_tensors(models::weights_of(*model), model->int8_layers());
  EXPECT_EQ(tensors.at("stage0.conv0.weight").scalar_type(), torch::kInt8);
  EXPECT_EQ(tensors.at("stage0.conv0.weight_scale").sizes(), torch::IntArrayRef({4, 1, 1, 1}));
  EXPECT_EQ(tensors.at("head.output_zero_point").scalar_type(), torch::kUInt8);
  auto fresh = models::make_model(options);  // in training mode, as built
  load_int8(*fresh, tensors, "model.safetensors");
  for (const auto& [name, buffer] : models::named_state(*fresh))  // batch norm's statistics untouched
    if (name.find("running_") != std::string::npos) EXPECT_TRUE(torch::equal(buffer, tensors.at(name))) << name;
  EXPECT_TRUE(fresh->is_training());
  fresh->eval();
  EXPECT_TRUE(torch::equal(fresh->forward(x).logits, int8));
}

TEST(Quantize, ADynamicGptRoundTripsThroughItsTensorsAndRefusesAMissingScale) {
  const auto options = test::gpt_options();
  auto model = random_model(options, 5);
  attach(*model, quantize(*model, QuantOptions{}, {}).layers);
  const auto ids = torch::randint(options.vocab_size, {2, 9}, torch::kLong);
  torch::NoGradGuard no_grad;
  const auto logits = model->forward(ids).logits;
  auto tensors = models::int8_tensors(models::weights_of(*model), model->int8_layers());
  // The position table is looked up, not multiplied: int8 in storage, per row.
  EXPECT_EQ(tensors.at("transformer.wpe.weight").scalar_type(), torch::kInt8);
  EXPECT_EQ(tensors.at("transformer.wpe.weight_scale").sizes(), torch::IntArrayRef({options.context, 1}));
  auto fresh = models::make_model(options);
  fresh->eval();
  load_int8(*fresh, tensors, "model.safetensors");
  EXPECT_TRUE(torch::equal(fresh->forward(ids).logits, logits));
  tensors.erase("transformer.h.0.attn.c_attn.weight_scale");
  auto another = models::make_model(options);
  test::expect_error<CheckpointError>([&] { load_int8(*another, tensors, "model.safetensors"); },
                                      {"model.safetensors", "transformer.h.0.attn.c_attn.weight_scale"});
}
