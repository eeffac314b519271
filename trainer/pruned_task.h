#pragma once
/// Fine-tuning after pruning: wraps any Task (supervised, distillation) and keeps every
/// pruned weight at exactly zero. Gradients of pruned weights are zeroed as they arrive
/// (a tensor hook, so before gradient all-reduce, accumulation and the fp32 master copy)
/// and again in before_step(); after_step() re-applies the masks to the weights, so
/// neither momentum nor weight decay can regrow them. The masks go into checkpoints as
/// task state ("mask.<param>") and come back on resume.
///   auto masks = prune::Masks::from_state_dict(...);          // from the pruned run
///   auto task = std::make_shared<trainer::PrunedTask>(inner, masks, comm);
///   setup.task = task;  trainer::Trainer(std::move(setup)).fit();
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "launch/communicator.h"
#include "prune/masks.h"
#include "trainer/task.h"

namespace retort::trainer {

class PrunedTask : public Task {
 public:
  /// Checks the masks against inner->model() (CheckpointError naming what does not fit),
  /// makes them rank 0's on every rank when `comm` is given, and zeroes the pruned weights.
  PrunedTask(std::shared_ptr<Task> inner, prune::Masks masks, std::shared_ptr<launch::Communicator> comm = nullptr);
  ~PrunedTask() override;
  PrunedTask(const PrunedTask&) = delete;
  PrunedTask& operator=(const PrunedTask&) = delete;

  models::Model& model() override { return inner_->model(); }
  Losses loss(const torch::Tensor& x, const data::Labels& labels) override { return inner_->loss(x, labels); }
  std::vector<std::string> loss_terms() const override { return inner_->loss_terms(); }
  NamedParams trainable() override { return inner_->trainable(); }
  std::vector<std::pair<std::string, torch::nn::Module*>> extra_modules() override { return inner_->extra_modules(); }
  void train(bool on) override { inner_->train(on); }
  /// Moves the inner task and the device copies of the masks.
  void to(const torch::Device& device) override;
  void before_step() override;
  void after_step() override;
  /// The inner task's state plus "mask.<param>" for every mask.
  std::map<std::string, torch::Tensor> state_dict() const override;
  /// Restores the masks (CheckpointError when the state has none, or they do not fit the
  /// model) and the inner task's state; re-applies the masks to the weights.
  void load_state_dict(const std::map<std::string, torch::Tensor>& state) override;

  const prune::Masks& masks() const { return masks_; }
  Task& inner() { return *inner_; }

 private:
  struct Entry {
    torch::Tensor param;  // the model's parameter
    // bool, true where pruned, on the parameter's device; shared with the gradient hook so
    // that to() moves what the hook uses
    std::shared_ptr<torch::Tensor> pruned;
    unsigned hook = 0;
    bool hooked = false;
  };
  void attach();
  void detach();
  void zero_grads();
  void zero_weights();

  std::shared_ptr<Task> inner_;
  prune::Masks masks_;
  std::vector<Entry> entries_;
};

}  // namespace retort::trainer
