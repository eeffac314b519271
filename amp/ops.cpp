#include "amp/ops.h"

#include <cmath>
#include <string>

#include "amp/autocast.h"
#include "amp/layer_kernels.h"
#include "amp/policy.h"
#include "core/error.h"

namespace retort::amp {
namespace {

void check_same_shape(const char* op, const torch::Tensor& a, const torch::Tensor& b, const char* na, const char* nb) {
  if (!a.defined() || !b.defined()) {
    throw Error(std::string("amp::") + op + ": " + (a.defined() ? nb : na) + " is an undefined tensor");
  }
  if (a.sizes() != b.sizes()) {
    throw Error(std::string("amp::") + op + ": " + na + " " + c10::str(a.sizes()) + " and " + nb + " " +
                c10::str(b.sizes()) + " must have the same shape");
  }
}

/// What a kernel registered for `weight` is told of the call (amp/layer_kernels.h).
LayerCall layer_call(LayerOp op, const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  LayerCall call;
  call.op = op;
  call.x = x;
  call.weight = weight;
  call.bias = bias;
  return call;
}

}  // namespace

// --- lower precision -----------------------------------------------------------------

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (auto kernel = layer_kernel(weight)) return kernel->run(layer_call(LayerOp::kLinear, x, weight, bias));
  auto in = autocast_inputs(Op::kLinear, {x, weight, bias});
  return torch::linear(in[0], in[1], in[2]);
}

torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b) {
  auto in = autocast_inputs(Op::kMatmul, {a, b});
  return torch::matmul(in[0], in[1]);
}

torch::Tensor bmm(const torch::Tensor& a, const torch::Tensor& b) {
  auto in = autocast_inputs(Op::kBmm, {a, b});
  return torch::bmm(in[0], in[1]);
}

torch::Tensor addmm(const torch::Tensor& bias, const torch::Tensor& a, const torch::Tensor& b) {
  if (auto kernel = layer_kernel(b)) return kernel->run(layer_call(LayerOp::kConv1D, a, b, bias));
  auto in = autocast_inputs(Op::kAddmm, {bias, a, b});
  return torch::addmm(in[0], in[1], in[2]);
}

torch::Tensor baddbmm(const torch::Tensor& bias, const torch::Tensor& a, const torch::Tensor& b, double beta,
                      double alpha) {
  auto in = autocast_inputs(Op::kBaddbmm, {bias, a, b});
  return torch::baddbmm(in[0], in[1], in[2], beta, alpha);
}

torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     torch::IntArrayRef stride, torch::IntArrayRef padding, torch::IntArrayRef dilation,
                     int64_t groups) {
  if (auto kernel = layer_kernel(weight)) {
    auto call = layer_call(LayerOp::kConv2d, x, weight, bias);
    call.stride = stride.vec(), call.padding = padding.vec(), call.dilation = dilation.vec(), call.groups = groups;
    return kernel->run(call);
  }
  auto in = autocast_inputs(Op::kConv2d, {x, weight, bias});
  return torch::conv2d(in[0], in[1], in[2], stride, padding, dilation, groups);
}

torch::Tensor attention_scores(const torch::Tensor& q, const torch::Tensor& k, double scale) {
  auto in = autocast_inputs(Op::kAttentionScores, {q, k});
  // q and k each scaled by sqrt(scale) before the matmul, as PyTorch's math attention: the
  // unscaled products would overflow fp16 (65504) sqrt(head dim) times sooner.
  // [..., T, D] @ [..., D, S] -> [..., T, S]
  if (scale == 1.0) return torch::matmul(in[0], in[1].transpose(-2, -1));
  const double root = std::sqrt(scale);
  return torch::matmul(in[0] * root, (in[1] * root).transpose(-2, -1));
}

// --- fp32 ----------------------------------------------------------------------------

torch::Tensor softmax(const torch::Tensor& x, int64_t dim) {
  auto in = autocast_inputs(Op::kSoftmax, {x});
  return torch::softmax(in[0], dim);
}

torch::Tensor gelu(const torch::Tensor& x, const std::string& approximate) {
  auto in = autocast_inputs(Op::kGelu, {x});
  return torch::gelu(in[0], approximate);
}

torch::Tensor log_softmax(const torch::Tensor& x, int64_t dim) {
  auto in = autocast_inputs(Op::kLogSoftmax, {x});
  return torch::log_softmax(in[0], dim);
}

torch::Tensor layer_norm(const torch::Tensor& x, torch::IntArrayRef shape, const torch::Tensor& weight,
                         const torch::Tensor& bias, double eps) {
  auto in = autocast_inputs(Op::kLayerNorm, {x, weight, bias});
  return torch::layer_norm(in[0], shape, in[1], in[2], eps);
}

torch::Tensor group_norm(const torch::Tensor& x, int64_t groups, const torch::Tensor& weight,
                         const torch::Tensor& bias, double eps) {
  auto in = autocast_inputs(Op::kGroupNorm, {x, weight, bias});
  return torch::group_norm(in[0], groups, in[1], in[2], eps);
}

torch::Tensor batch_norm(const torch::Tensor& x, const torch::Tensor& running_mean, const torch::Tensor& running_var,
                         const torch::Tensor& weight, const torch::Tensor& bias, bool training, double momentum,
                         double eps) {
  auto in = autocast_inputs(Op::kBatchNorm, {x, weight, bias, running_mean, running_var});
  auto out = torch::batch_norm(in[0], in[1], in[2], in[3], in[4], training, momentum, eps,
                               /*cudnn_enabled=*/true);
  if (training) {
    write_back_statistics(running_mean, in[3]);
    write_back_statistics(running_var, in[4]);
  }
  return out;
}

torch::Tensor exp(const torch::Tensor& x) { return torch::exp(autocast_inputs(Op::kExp, {x})[0]); }

torch::Tensor log(const torch::Tensor& x) { return torch::log(autocast_inputs(Op::kLog, {x})[0]); }

torch::Tensor pow(const torch::Tensor& x, double exponent) {
  return torch::pow(autocast_inputs(Op::kPow, {x})[0], exponent);
}

torch::Tensor sum(const torch::Tensor& x) { return torch::sum(autocast_inputs(Op::kSum, {x})[0]); }

torch::Tensor mean(const torch::Tensor& x) { return torch::mean(autocast_inputs(Op::kMean, {x})[0]); }

torch::Tensor norm(const torch::Tensor& x, double p) { return torch::norm(autocast_inputs(Op::kNorm, {x})[0], p); }

torch::Tensor cross_entropy(const torch::Tensor& logits, const torch::Tensor& target, double label_smoothing) {
  if (!logits.defined() || !target.defined()) throw Error("amp::cross_entropy: logits and target must be defined");
  if (!(label_smoothing >= 0.0 && label_smoothing < 1.0))
    throw Error("amp::cross_entropy: label_smoothing must be in [0, 1), got " + std::to_string(label_smoothing));
  if (logits.dim() < 2) {
    throw Error("amp::cross_entropy: logits " + c10::str(logits.sizes()) + " need at least 2 dims [..., classes]");
  }
  const bool soft = target.is_floating_point();
  if (soft) {
    check_same_shape("cross_entropy", logits, target, "logits", "probability target");
  } else if (target.sizes() != logits.sizes().slice(0, logits.dim() - 1)) {
    throw Error("amp::cross_entropy: class-index target " + c10::str(target.sizes()) +
                " must have the shape of logits " + c10::str(logits.sizes()) + " without the last (class) dim");
  }
  auto in = autocast_inputs(Op::kCrossEntropy, {logits, target});
  // Classes are the last dim (transformer logits [B, T, V]); flatten to [N, C] / [N].
  const int64_t classes = logits.size(-1);
  auto lg = in[0].reshape({-1, classes});
  auto tg = soft ? in[1].reshape({-1, classes}) : in[1].reshape({-1}).to(torch::kLong);
  return torch::cross_entropy_loss(lg, tg, /*weight=*/{}, at::Reduction::Mean, /*ignore_index=*/-100, label_smoothing);
}

torch::Tensor mse_loss(const torch::Tensor& input, const torch::Tensor& target) {
  check_same_shape("mse_loss", input, target, "input", "target");
  auto in = autocast_inputs(Op::kMseLoss, {input, target});
  return torch::mse_loss(in[0], in[1]);
}

torch::Tensor cosine_loss(const torch::Tensor& a, const torch::Tensor& b) {
  check_same_shape("cosine_loss", a, b, "a", "b");
  if (a.dim() < 2) throw Error("amp::cosine_loss: inputs " + c10::str(a.sizes()) + " need at least 2 dims [rows, ...]");
  auto in = autocast_inputs(Op::kCosineLoss, {a, b});
  auto cos = torch::cosine_similarity(in[0].flatten(1), in[1].flatten(1), /*dim=*/1, /*eps=*/1e-8);  // [rows]
  return (1.0 - cos).mean();
}

// --- promote to the widest input type -------------------------------------------------

torch::Tensor add(const torch::Tensor& a, const torch::Tensor& b) {
  auto in = autocast_inputs(Op::kAdd, {a, b});
  return torch::add(in[0], in[1]);
}

torch::Tensor cat(torch::TensorList tensors, int64_t dim) { return torch::cat(autocast_inputs(Op::kCat, tensors), dim); }

torch::Tensor stack(torch::TensorList tensors, int64_t dim) {
  return torch::stack(autocast_inputs(Op::kStack, tensors), dim);
}

}  // namespace retort::amp
