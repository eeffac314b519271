#pragma once
/// The ops retort's models and losses call. Each consults the thread's amp::Autocast state
/// and the op policy (amp/policy.h): with autocast off they are the plain LibTorch op;
/// with it on, inputs are cast at the op (low precision for matmul-like ops, fp32 for
/// numerically sensitive ones, widest type for promoting ones).
///   auto h = amp::linear(x, fc->weight, fc->bias);   // bf16 under a bf16 Autocast
/// linear, addmm and conv2d run the kernel registered for their weight instead, where one
/// is (amp/layer_kernels.h: int8 layers). This header is the contract between amp/ and
/// models/, distill/; amp/ owns the rest.
#include <torch/torch.h>

#include <memory>
#include <string>

#include "launch/communicator.h"

namespace retort::amp {

// --- lower precision -----------------------------------------------------------------
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});
torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor bmm(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor addmm(const torch::Tensor& bias, const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor baddbmm(const torch::Tensor& bias, const torch::Tensor& a, const torch::Tensor& b,
                      double beta = 1.0, double alpha = 1.0);
torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     torch::IntArrayRef stride = 1, torch::IntArrayRef padding = 0,
                     torch::IntArrayRef dilation = 1, int64_t groups = 1);
/// (q sqrt(scale)) @ (k sqrt(scale))^T, the attention-score matmul (scaled before the
/// product, so fp16 scores overflow only where the scaled ones would).
torch::Tensor attention_scores(const torch::Tensor& q, const torch::Tensor& k, double scale);

// --- fp32 ----------------------------------------------------------------------------
torch::Tensor softmax(const torch::Tensor& x, int64_t dim);
torch::Tensor log_softmax(const torch::Tensor& x, int64_t dim);
torch::Tensor layer_norm(const torch::Tensor& x, torch::IntArrayRef shape, const torch::Tensor& weight,
                         const torch::Tensor& bias, double eps = 1e-5);
torch::Tensor group_norm(const torch::Tensor& x, int64_t groups, const torch::Tensor& weight,
                         const torch::Tensor& bias, double eps = 1e-5);
torch::Tensor batch_norm(const torch::Tensor& x, const torch::Tensor& running_mean, const torch::Tensor& running_var,
                         const torch::Tensor& weight, const torch::Tensor& bias, bool training,
                         double momentum = 0.1, double eps = 1e-5);
/// Batch norm in training whose statistics span every rank of `comm` (PyTorch's
/// SyncBatchNorm): N ranks normalise each sample as one process does with the whole
/// global batch, and update the running statistics alike on every rank. Otherwise as
/// batch_norm(training=true): same autocast policy, weight and bias gradients of this
/// rank's samples (the gradient reducer sums them). Collectives: an all_gather in forward
/// and an all_reduce in backward, so every rank must call it, one with an empty shard too.
torch::Tensor sync_batch_norm(const torch::Tensor& x, const torch::Tensor& running_mean,
                              const torch::Tensor& running_var, const torch::Tensor& weight, const torch::Tensor& bias,
                              double momentum, double eps, std::shared_ptr<launch::Communicator> comm);
torch::Tensor exp(const torch::Tensor& x);
torch::Tensor log(const torch::Tensor& x);
torch::Tensor pow(const torch::Tensor& x, double exponent);
torch::Tensor sum(const torch::Tensor& x);
torch::Tensor mean(const torch::Tensor& x);
torch::Tensor norm(const torch::Tensor& x, double p = 2.0);
/// Losses: always fp32 in, fp32 out. reduction: mean.
/// label_smoothing eps in [0, 1): the target becomes (1 - eps) target + eps / classes
/// (PyTorch's cross_entropy(label_smoothing=eps)).
torch::Tensor cross_entropy(const torch::Tensor& logits, const torch::Tensor& target, double label_smoothing = 0.0);
torch::Tensor mse_loss(const torch::Tensor& input, const torch::Tensor& target);
/// mean(1 - cos(a_i, b_i)) over rows after flattening all but dim 0.
torch::Tensor cosine_loss(const torch::Tensor& a, const torch::Tensor& b);

// --- fp32 on CPU, as they come on CUDA -------------------------------------------------
/// approximate: "none" (erf) or "tanh" (GPT-2's gelu_new), as torch::gelu.
torch::Tensor gelu(const torch::Tensor& x, const std::string& approximate = "none");

// --- promote to the widest input type -------------------------------------------------
torch::Tensor add(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor cat(torch::TensorList tensors, int64_t dim);
torch::Tensor stack(torch::TensorList tensors, int64_t dim);

}  // namespace retort::amp
