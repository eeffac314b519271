#pragma once
/// What the trainer trains: a model (what gets exported), any extra trainable modules
/// (e.g. distillation projections: trained and checkpointed, never exported), and how a
/// batch becomes a loss. The trainer owns the loop; a Task owns the objective.
///   SupervisedTask task(model);               // cross-entropy on labels
///   Losses l = task.loss(batch.x, batch.labels());   // l.total, l.terms {"ce": ...}
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "models/model.h"

namespace retort::trainer {

using NamedParams = std::vector<std::pair<std::string, torch::Tensor>>;

struct Losses {
  torch::Tensor total;                                        // scalar, what backward runs on
  std::vector<std::pair<std::string, torch::Tensor>> terms;   // named parts, logged separately
  torch::Tensor logits;                                       // [B, classes], for accuracy
};

class Task {
 public:
  virtual ~Task() = default;
  /// The model that eval and export see.
  virtual models::Model& model() = 0;
  /// Runs forward and the objective on one (micro-)batch; called inside the autocast region.
  /// `labels` converts from a plain label tensor; with mixup it carries both label sets.
  virtual Losses loss(const torch::Tensor& x, const data::Labels& labels) = 0;
  /// The names of loss()'s terms, in its order, the same on every rank and for every
  /// batch (the trainer's metrics all-reduce has one layout on every rank).
  virtual std::vector<std::string> loss_terms() const = 0;
  /// Everything the optimizer updates, by unique name (model parameters first).
  virtual NamedParams trainable();
  /// Modules besides the model whose weights belong in checkpoints (by prefix).
  virtual std::vector<std::pair<std::string, torch::nn::Module*>> extra_modules() { return {}; }
  /// Train/eval mode of every trained module (a frozen teacher stays in eval).
  virtual void train(bool on);
  /// Moves every module to the device.
  virtual void to(const torch::Device& device);
  /// Called once the step's gradients are reduced and unscaled, before clipping and the
  /// optimizer step (pruning zeroes the gradients of pruned weights here).
  virtual void before_step() {}
  /// Called after each optimizer step (pruning re-applies its masks here).
  virtual void after_step() {}
  /// Task state that checkpoints carry besides module weights (pruning masks), by name.
  virtual std::map<std::string, torch::Tensor> state_dict() const { return {}; }
  virtual void load_state_dict(const std::map<std::string, torch::Tensor>& /*state*/) {}
};

/// Plain supervised training: cross-entropy of the model's logits on the labels (the mixed
/// labels' cross-entropy under mixup).
class SupervisedTask : public Task {
 public:
  explicit SupervisedTask(std::shared_ptr<models::Model> model) : model_(std::move(model)) {}
  models::Model& model() override { return *model_; }
  Losses loss(const torch::Tensor& x, const data::Labels& labels) override;
  std::vector<std::string> loss_terms() const override { return {"ce"}; }

 private:
  std::shared_ptr<models::Model> model_;
};

}  // namespace retort::trainer
