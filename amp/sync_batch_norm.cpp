// Batch norm whose training statistics span every rank (PyTorch's SyncBatchNorm), as an
// autograd function of our own: LibTorch 1.13 has batch_norm_stats and its siblings for
// CUDA only, and this one runs on any device through the Communicator.
#include <torch/torch.h>

#include "amp/ops.h"
#include "amp/policy.h"
#include "core/error.h"

namespace retort::amp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct CommHolder : torch::CustomClassHolder {
  explicit CommHolder(std::shared_ptr<launch::Communicator> c) : comm(std::move(c)) {}
  std::shared_ptr<launch::Communicator> comm;
};

// [C] -> [1, C, 1, ...], to broadcast against x.
torch::Tensor per_channel(const torch::Tensor& v, const torch::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = x.size(1);
  return v.view(shape);
}

// x * scale + shift per channel ([C] each), in one pass of batch norm's inference kernel
// (mean 0, variance 1 - eps: it normalises by 1), faster than broadcasting ops.
torch::Tensor per_channel_affine(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& shift,
                                 double eps) {
  torch::NoGradGuard no_grad;
  return torch::batch_norm(x, scale, shift, torch::zeros_like(scale), torch::full_like(scale, 1.0 - eps),
                           /*training=*/false, 0.0, eps, /*cudnn_enabled=*/true);
}

torch::Tensor fp32_or_ones(const torch::Tensor& t, int64_t channels, const torch::Tensor& like, double fill) {
  return t.defined() ? t.to(torch::kFloat) : torch::full({channels}, fill, like.options().dtype(torch::kFloat));
}

class SyncBatchNorm : public torch::autograd::Function<SyncBatchNorm> {
 public:
  // Optional tensors: LibTorch 1.13's Function records every tensor argument's device,
  // so an undefined one (no affine weight, no running statistics) cannot be passed as is.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, c10::optional<torch::Tensor> weight_arg,
                               c10::optional<torch::Tensor> bias_arg, c10::optional<torch::Tensor> running_mean,
                               c10::optional<torch::Tensor> running_var, double momentum, double eps,
                               std::shared_ptr<launch::Communicator> comm) {
    const torch::Tensor weight = weight_arg.value_or(torch::Tensor()), bias = bias_arg.value_or(torch::Tensor());
    const int64_t channels = x.size(1);
    const int64_t n = channels > 0 ? x.numel() / channels : 0;
    // This rank's count, mean and sum of squared deviations per channel, combined over the
    // ranks in fp64 with Chan's parallel formula (as batch_norm_gather_stats_with_counts).
    auto f64 = x.options().dtype(torch::kDouble);
    torch::Tensor mean = torch::zeros({channels}, f64), m2 = torch::zeros({channels}, f64);
    if (n > 0) {  // batch norm's own statistics kernel (faster than var_mean over these dims)
      auto [m, var] = torch::batch_norm_update_stats(x.to(torch::kFloat), {}, {}, 0.0);  // biased var
      mean = m.to(torch::kDouble);
      m2 = var.to(torch::kDouble) * static_cast<double>(n);
    }
    auto local = torch::cat({torch::full({1}, static_cast<double>(n), f64), mean, m2}).to(comm->device());
    const auto all = comm->all_gather(local).to(x.device());  // [ranks, 1 + 2C]
    const auto counts = all.select(1, 0).unsqueeze(1);        // [ranks, 1]
    const double total = counts.sum().item<double>();
    if (total < 2)
      throw Error("batch norm in training needs more than one value per channel over all ranks, got " +
                  std::to_string(static_cast<int64_t>(total)) + " (a larger data.batch_size)");
    const auto means = all.narrow(1, 1, channels), m2s = all.narrow(1, 1 + channels, channels);
    const auto global_mean = (counts * means).sum(0) / total;
    const auto global_m2 = (m2s + counts * (means - global_mean).pow(2)).sum(0);
    const auto mean32 = global_mean.to(torch::kFloat), var32 = (global_m2 / total).to(torch::kFloat);
    {
      torch::NoGradGuard no_grad;  // the same update on every rank: running statistics stay equal
      if (running_mean)
        running_mean->mul_(1 - momentum).add_(global_mean.to(running_mean->scalar_type()), momentum);
      if (running_var)
        running_var->mul_(1 - momentum).add_((global_m2 / (total - 1)).to(running_var->scalar_type()), momentum);
    }
    const auto invstd = (var32 + eps).rsqrt();
    ctx->save_for_backward({x, weight, bias, mean32, invstd});
    ctx->saved_data["count"] = total;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["comm"] = c10::IValue::make_capsule(c10::make_intrusive<CommHolder>(std::move(comm)));
    // The normalisation itself is batch norm's own kernel, fed the global statistics.
    torch::NoGradGuard no_grad;
    return torch::batch_norm(x, weight, bias, mean32, var32, /*training=*/false, 0.0, eps, /*cudnn_enabled=*/true);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &bias = saved[2], &mean = saved[3], &invstd = saved[4];
    const double total = ctx->saved_data["count"].toDouble(), eps = ctx->saved_data["eps"].toDouble();
    auto comm = c10::static_intrusive_pointer_cast<CommHolder>(ctx->saved_data["comm"].toCapsule())->comm;
    const int64_t channels = x.size(1);
    const auto& dy = grad_outputs[0];
    // This rank's sum(dy) and sum(dy (x - mean)) invstd per channel, in one pass of batch
    // norm's backward kernel (given the global mean and invstd, it returns exactly these as
    // the bias and weight gradients). [C] each, fp32.
    torch::Tensor sum_dy = torch::zeros({channels}, mean.options()), sum_dy_xhat = torch::zeros_like(sum_dy);
    if (x.numel() > 0) {
      auto grads = torch::native_batch_norm_backward(dy, x, weight, {}, {}, mean, invstd, /*train=*/true, eps,
                                                     {false, true, true});
      sum_dy_xhat = std::get<1>(grads).to(torch::kFloat);
      sum_dy = std::get<2>(grads).to(torch::kFloat);
    }
    auto global = torch::cat({sum_dy, sum_dy_xhat}).to(comm->device());
    comm->all_reduce(global, launch::ReduceOp::kSum);
    global = global.to(x.device());
    const auto mean_dy = global.narrow(0, 0, channels) / total;
    const auto mean_dy_xhat = global.narrow(0, channels, channels) / total;
    // dx = w invstd (dy - mean(dy) - xhat mean(dy xhat)), xhat = (x - mean) invstd, with
    // the means over every rank's samples.
    // As dx = b x + c + a dy per channel: a = w invstd, b = -a invstd mean(dy xhat),
    // c = -a mean(dy) - b mean.
    const auto a = fp32_or_ones(weight, channels, x, 1.0) * invstd;
    const auto b = -a * invstd * mean_dy_xhat;
    auto dx = per_channel_affine(x.to(torch::kFloat), b, -a * mean_dy - b * mean, eps);
    dx.addcmul_(dy, per_channel(a, x));
    torch::Tensor dw, db;  // this rank's share; the gradient reducer sums them
    if (weight.defined()) dw = sum_dy_xhat.to(weight.scalar_type());
    if (bias.defined()) db = sum_dy.to(bias.scalar_type());
    return {dx.to(x.scalar_type()), dw, db, {}, {}, {}, {}, {}};
  }
};

}  // namespace

torch::Tensor sync_batch_norm(const torch::Tensor& x, const torch::Tensor& running_mean,
                              const torch::Tensor& running_var, const torch::Tensor& weight, const torch::Tensor& bias,
                              double momentum, double eps, std::shared_ptr<launch::Communicator> comm) {
  if (!comm) throw Error("amp::sync_batch_norm: no communicator");
  if (x.dim() < 2) throw Error("amp::sync_batch_norm: input needs [batch, channels, ...], got " + c10::str(x.sizes()));
  auto in = autocast_inputs(Op::kBatchNorm, {x, weight, bias, running_mean, running_var});
  auto optional = [](const torch::Tensor& t) { return t.defined() ? c10::optional<torch::Tensor>(t) : c10::nullopt; };
  auto out = SyncBatchNorm::apply(in[0], optional(in[1]), optional(in[2]), optional(in[3]), optional(in[4]), momentum,
                                  eps, std::move(comm));
  write_back_statistics(running_mean, in[3]);
  write_back_statistics(running_var, in[4]);
  return out;
}

}  // namespace retort::amp
