#pragma once
/// Optimizers (LibTorch's AdamW and SGD, the same algorithms the PyTorch reference runs)
/// and their per-parameter state as named tensors, so checkpoints hold plain tensors.
///   auto opt = make_optimizer(options, named_params);
///   auto state = optimizer_state(*opt, named_params);   // "exp_avg.fc0.weight", ...
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trainer/options.h"

namespace retort::trainer {

using NamedParams = std::vector<std::pair<std::string, torch::Tensor>>;

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimOptions& options, const NamedParams& params);

/// Sets the learning rate of every parameter group.
void set_lr(torch::optim::Optimizer& optimizer, double lr);

/// Scales the gradients of every parameter the optimizer steps so that their global L2
/// norm is at most max_norm (torch.nn.utils.clip_grad_norm_).
void clip_grad_norm(torch::optim::Optimizer& optimizer, double max_norm);

/// Per-parameter state keyed "<field>.<param name>" (adamw: step, exp_avg, exp_avg_sq;
/// sgd: momentum_buffer). Parameters without state yet are absent.
std::map<std::string, torch::Tensor> optimizer_state(torch::optim::Optimizer& optimizer, const NamedParams& params);
/// Restores what optimizer_state() produced; CheckpointError naming the key on a shape
/// mismatch or a key that belongs to no parameter.
void load_optimizer_state(torch::optim::Optimizer& optimizer, const NamedParams& params,
                          const std::map<std::string, torch::Tensor>& state);

}  // namespace retort::trainer
