#include "quant/kernels.h"

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include "core/error.h"
#include "core/text.h"

namespace retort::quant {
namespace {

/// One of LibTorch's quantized ops (registered as `quantized::<name>`, not in at::), found
/// in the dispatcher once, when a kernel is made.
c10::OperatorHandle quantized_op(const char* name, const char* overload = "") {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
}

/// Calls it; the packed weights the ops take are custom-class objects, held as IValues.
c10::IValue call_op(const c10::OperatorHandle& op, std::vector<c10::IValue> stack) {
  op.callBoxed(&stack);
  return stack.at(0);
}

std::vector<int64_t> pair_of(const std::vector<int64_t>& v) {
  return v.size() == 1 ? std::vector<int64_t>{v[0], v[0]} : v;
}

/// The layer's int8 weight as LibTorch's per-channel qint8 tensor, output
/// channels first.
torch::Tensor qint8_weight(const models::Int8Layer& layer) {
  auto values = layer.values, scale = layer.scale.flatten();
  if (layer.op == amp::LayerOp::kConv1D) values = values.t();
  return at::_make_per_channel_quantized_tensor(values.contiguous(), scale.to(torch::kFloat64),
                                                torch::zeros(scale.sizes(), torch::kInt64), 0);
}

/// A tensor shaped and strided as `like`, of `dtype`: the quantize and
/// dequantize loops below walk both in storage order, so a channels-last
/// activation stays channels-last.
torch::Tensor empty_as(const torch::Tensor& like, torch::ScalarType dtype) {
  return at::empty_strided(like.sizes(), like.strides(), torch::TensorOptions().dtype(dtype));
}

/// x (float32) as quint8 with `a`, in one pass the compiler vectorises:
/// LibTorch 1.13's own quantize_per_tensor and dequantize run scalar loops
/// where FBGEMM is absent (Debian's build), several times slower
/// (bench/RESULTS.md "Quantization").
torch::Tensor quantize_uint8(const torch::Tensor& x, const models::Affine8& a) {
  const auto in = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  auto q = empty_as(in, torch::kByte);
  const float inv = 1.0f / static_cast<float>(a.scale), zero = static_cast<float>(a.zero_point);
  const float* src = in.data_ptr<float>();
  uint8_t* dst = q.data_ptr<uint8_t>();
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds half to even
  at::parallel_for(0, in.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float v = std::min(std::max(src[i] * inv + zero, 0.0f), 255.0f);
      dst[i] = static_cast<uint8_t>((v + kRound) - kRound);
    }
  });
  return at::_make_per_tensor_quantized_tensor(q, a.scale, a.zero_point);
}

/// A quint8 tensor's real values, float32, in one vectorised pass.
torch::Tensor dequantize_uint8(const torch::Tensor& q) {
  auto out = empty_as(q, torch::kFloat32);
  const float scale = static_cast<float>(q.q_scale()), zero = static_cast<float>(q.q_zero_point());
  const auto* src = static_cast<const uint8_t*>(q.data_ptr());
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, q.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] = (static_cast<float>(src[i]) - zero) * scale;
  });
  return out;
}

class Int8Kernel : public amp::LayerKernel {
 public:
  Int8Kernel(std::string name, c10::OperatorHandle op, c10::IValue packed)
      : name_(std::move(name)), op_(std::move(op)), packed_(std::move(packed)) {}

 protected:
  /// The input as the ops take it: fp32 on the CPU, outside autograd.
  torch::Tensor input(const amp::LayerCall& call) const {
    if (!call.x.device().is_cpu())
      throw Error("int8 layer " + name_ + ": runs on the CPU, got an input on " + call.x.device().str() +
                  " (evaluate a quantized run with trainer.device=cpu)");
    if (torch::GradMode::is_enabled() && call.x.requires_grad())
      throw Error("int8 layer " + name_ + ": has no gradient (train or fine-tune the fp32 run, then quantize it)");
    return call.x.to(torch::kFloat32);
  }
  std::string name_;
  c10::OperatorHandle op_;
  c10::IValue packed_;
};

class DynamicLinear : public Int8Kernel {
 public:
  using Int8Kernel::Int8Kernel;
  torch::Tensor run(const amp::LayerCall& call) const override {
    // reduce_range false: activations get all 8 bits, as the static layers'
    // calibrated ranges and ONNX Runtime's DynamicQuantizeLinear do (README,
    // "retort quantize", on CPUs without VNNI).
    return call_op(op_, {input(call).contiguous(), packed_, false}).toTensor();
  }
};

/// A static layer: the input quantized with its calibrated parameters, the int8 op (which
/// requantizes its output with the output's), the result dequantized.
class StaticLayer : public Int8Kernel {
 public:
  StaticLayer(std::string name, c10::OperatorHandle op, c10::IValue packed, models::Affine8 in, models::Affine8 out)
      : Int8Kernel(std::move(name), std::move(op), std::move(packed)), in_(in), out_(out) {}
  torch::Tensor run(const amp::LayerCall& call) const override {
    auto y = call_op(op_, {quantize_uint8(input(call), in_), packed_, out_.scale, out_.zero_point});
    return dequantize_uint8(y.toTensor());
  }

 private:
  models::Affine8 in_, out_;
};

}  // namespace

std::string engine_name(Engine engine) {
  switch (engine) {
    case Engine::kAuto:
      return "auto";
    case Engine::kOneDnn:
      return "onednn";
    case Engine::kFbgemm:
      return "fbgemm";
    case Engine::kQnnpack:
      return "qnnpack";
  }
  return "?";
}

std::string use_engine(Engine engine) {
  const std::vector<std::pair<Engine, at::QEngine>> order = {{Engine::kOneDnn, at::QEngine::ONEDNN},
                                                             {Engine::kFbgemm, at::QEngine::FBGEMM},
                                                             {Engine::kQnnpack, at::QEngine::QNNPACK}};
  const auto& supported = at::globalContext().supportedQEngines();
  std::vector<std::string> names;
  for (const auto& [ours, theirs] : order) {
    const bool here = std::find(supported.begin(), supported.end(), theirs) != supported.end();
    if (here) names.push_back(engine_name(ours));
    if (here && (engine == Engine::kAuto || engine == ours)) {
      at::globalContext().setQEngine(theirs);
      return engine_name(ours);
    }
  }
  throw Error("int8 engine " + engine_name(engine) +
              " is not in this LibTorch (it has: " + (names.empty() ? std::string("none") : join(names)) + ")");
}

std::shared_ptr<const amp::LayerKernel> make_kernel(const models::Int8Layer& layer, const amp::LayerCall& seen) {
  const auto weight = qint8_weight(layer);
  const auto& bias = seen.bias;
  const c10::IValue b = bias.defined() ? c10::IValue(bias.detach().to(torch::kFloat32).contiguous()) : c10::IValue();
  if (layer.op == amp::LayerOp::kConv2d) {
    if (!layer.input || !layer.output)
      throw Error("int8 layer " + layer.name + ": a convolution is quantized statically only (quant.method=static)");
    auto packed =
        call_op(quantized_op("quantized::conv2d_prepack"),
                {weight, b, pair_of(seen.stride), pair_of(seen.padding), pair_of(seen.dilation), seen.groups});
    return std::make_shared<StaticLayer>(layer.name, quantized_op("quantized::conv2d", "new"), packed, *layer.input,
                                         *layer.output);
  }
  auto packed = call_op(quantized_op("quantized::linear_prepack"), {weight, b});
  if (layer.input && layer.output)
    return std::make_shared<StaticLayer>(layer.name, quantized_op("quantized::linear"), packed, *layer.input,
                                         *layer.output);
  return std::make_shared<DynamicLinear>(layer.name, quantized_op("quantized::linear_dynamic"), packed);
}

Int8Weight quantize_weight(const torch::Tensor& w, int64_t axis) {
  std::vector<int64_t> others;
  for (int64_t d = 0; d < w.dim(); ++d)
    if (d != axis) others.push_back(d);
  auto max_abs = w.detach().to(torch::kFloat32).abs().amax(others, /*keepdim=*/true);
  auto scale = torch::where(max_abs > 0, max_abs / 127.0, torch::ones_like(max_abs));
  return {torch::round(w.detach().to(torch::kFloat32) / scale).clamp(-127, 127).to(torch::kInt8), scale};
}

torch::Tensor fp32_layer(const amp::LayerCall& call) {
  switch (call.op) {
    case amp::LayerOp::kLinear:
      return torch::linear(call.x, call.weight, call.bias);
    case amp::LayerOp::kConv1D:
      return call.bias.defined() ? torch::addmm(call.bias, call.x, call.weight) : call.x.mm(call.weight);
    case amp::LayerOp::kConv2d:
      return torch::conv2d(call.x, call.weight, call.bias, call.stride, call.padding, call.dilation, call.groups);
  }
  throw Error("quant::fp32_layer: unknown layer op");
}

}  // namespace retort::quant
