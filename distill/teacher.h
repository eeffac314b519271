#pragma once
/// Building a frozen teacher from weights. Reading checkpoints is the trainer's and CLI's
/// job (floors 5-6); this takes the tensors they read.
///   auto file = models::load_safetensors(path);
///   auto teacher = distill::load_teacher_weights(teacher_options, file.tensors, path.string());
///   // teacher: eval mode, requires_grad false everywhere
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "models/model.h"

namespace retort::distill {

/// requires_grad false on every parameter and eval mode: what a teacher is.
void freeze(models::Model& model);

/// Builds `options.name` (models::make_model), loads `weights` by name (CheckpointError
/// naming `origin` and every missing, unexpected or mis-shaped tensor) and freezes it.
std::shared_ptr<models::Model> load_teacher_weights(const models::ModelOptions& options,
                                                    const std::map<std::string, torch::Tensor>& weights,
                                                    const std::string& origin);

/// The teacher's model options from a `model:`-shaped YAML map (distill.teacher.model or
/// the `model:` section of the teacher's checkpoint config). ConfigError naming `key`
/// and every unknown or ill-typed key.
models::ModelOptions read_model_options(const YAML::Node& node, const std::string& key);

}  // namespace retort::distill
