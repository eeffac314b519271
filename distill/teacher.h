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
#include <vector>

#include "models/model.h"

namespace retort::distill {

/// requires_grad false on every parameter and eval mode: what a teacher is.
void freeze(models::Model& model);

/// Builds `options.name` (models::make_model), loads `weights` by name (CheckpointError
/// naming `origin` and every missing, unexpected or mis-shaped tensor) and freezes it.
std::shared_ptr<models::Model> load_teacher_weights(const models::ModelOptions& options,
                                                    const std::map<std::string, torch::Tensor>& weights,
                                                    const std::string& origin);

/// Several frozen teachers acting as one: the logits are the mean of the members' logits
/// (what the kl and dkd terms see), the hidden states and attention maps are the first
/// member's (what the layer maps pair with the student). Members are registered as
/// submodules "member<i>", so to(), parameters() and buffers reach all of them; options()
/// and hidden_names() are the first member's. Each member runs its own forward: the cost of
/// a step grows with every teacher added.
class TeacherEnsemble : public models::Model {
 public:
  /// ConfigError naming `key` when `members` is empty, or a member differs from the first
  /// in num_classes, in_channels or image_size, or for language models in vocab_size or
  /// context (they must read the same input and vote on the same classes). Members are
  /// frozen.
  TeacherEnsemble(std::vector<std::shared_ptr<models::Model>> members, const std::string& key);
  models::Output forward(const torch::Tensor& x) override;
  std::vector<std::string> hidden_names() const override { return members_.front()->hidden_names(); }
  std::vector<std::string> hidden_kinds() const override { return members_.front()->hidden_kinds(); }
  /// The first member's maps are the ensemble's.
  void set_keep_attention(bool keep) override;
  size_t size() const { return members_.size(); }
  models::Model& member(size_t i) { return *members_.at(i); }

 private:
  std::vector<std::shared_ptr<models::Model>> members_;
};

}  // namespace retort::distill
