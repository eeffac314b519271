#pragma once
/// Moving weights between modules and named tensor maps (safetensors files, checkpoints).
///   models::load_weights(*model, models::load_safetensors(path).tensors, path.string());
#include <torch/torch.h>

#include <map>
#include <string>

namespace retort::models {

class Model;

/// Parameters and buffers by name, detached CPU copies (what export and checkpoints write).
std::map<std::string, torch::Tensor> weights_of(const torch::nn::Module& module);

/// Copies `tensors` into the module's parameters and buffers, by name, converting dtype.
/// Every missing, extra or mis-shaped tensor is named in one CheckpointError that also
/// names `origin`; nothing is copied unless everything matches.
void load_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                  const std::string& origin);
/// The same after model.normalize_weights(tensors): what a model's published checkpoints
/// carry beside its state (GPT-2's mask buffers, its tied lm_head) is accepted.
void load_weights(Model& model, const std::map<std::string, torch::Tensor>& tensors, const std::string& origin);

}  // namespace retort::models
