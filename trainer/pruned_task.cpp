#include "trainer/pruned_task.h"

#include "core/error.h"

namespace retort::trainer {

PrunedTask::PrunedTask(std::shared_ptr<Task> inner, prune::Masks masks, std::shared_ptr<launch::Communicator> comm)
    : inner_(std::move(inner)), masks_(std::move(masks)) {
  if (!inner_) throw Error("PrunedTask: no inner task");
  masks_.check(inner_->model(), "the pruned run");
  if (comm) masks_.broadcast(*comm, 0);
  attach();
  zero_weights();
}

PrunedTask::~PrunedTask() { detach(); }

void PrunedTask::attach() {
  auto params = inner_->model().named_parameters();
  for (const auto& [name, keep] : masks_.tensors()) {
    Entry e;
    e.param = params[name];
    e.pruned = std::make_shared<torch::Tensor>(keep.logical_not().to(e.param.device()));
    // Zeroing each incoming gradient (before it is accumulated) keeps pruned entries out
    // of everything downstream: micro-batch accumulation, the bucketed all-reduce, and
    // amp master mode, where .grad is copied to the fp32 masters before before_step() runs.
    if (e.param.requires_grad()) {
      auto pruned = e.pruned;
      e.hook = e.param.register_hook([pruned](const torch::Tensor& grad) { return grad.masked_fill(*pruned, 0); });
      e.hooked = true;
    }
    entries_.push_back(std::move(e));
  }
}

void PrunedTask::detach() {
  for (auto& e : entries_)
    if (e.hooked) e.param.remove_hook(e.hook);
  entries_.clear();
}

void PrunedTask::to(const torch::Device& device) {
  inner_->to(device);
  for (auto& e : entries_) *e.pruned = e.pruned->to(e.param.device());
}

void PrunedTask::zero_grads() {
  for (auto& e : entries_) {
    auto& g = e.param.mutable_grad();
    if (g.defined()) g.masked_fill_(*e.pruned, 0);
  }
}

void PrunedTask::zero_weights() {
  torch::NoGradGuard no_grad;
  for (auto& e : entries_) e.param.masked_fill_(*e.pruned, 0);
}

void PrunedTask::before_step() {
  inner_->before_step();
  zero_grads();
}

void PrunedTask::after_step() {
  inner_->after_step();
  zero_weights();
}

std::map<std::string, torch::Tensor> PrunedTask::state_dict() const {
  auto state = inner_->state_dict();
  for (auto& [key, t] : masks_.state_dict()) {
    if (state.count(key)) throw Error("PrunedTask: the inner task's state already has '" + key + "'");
    state[key] = t;
  }
  return state;
}

void PrunedTask::load_state_dict(const std::map<std::string, torch::Tensor>& state) {
  prune::Masks masks = prune::Masks::from_state_dict(state);
  if (masks.empty())
    throw CheckpointError("the checkpoint has no pruning masks (task.mask.*): it was not written by a run that "
                          "fine-tunes a pruned model");
  masks.check(inner_->model(), "the checkpoint");
  std::map<std::string, torch::Tensor> rest;
  for (const auto& [key, t] : state)
    if (key.rfind("mask.", 0) != 0) rest[key] = t;
  inner_->load_state_dict(rest);
  detach();
  masks_ = std::move(masks);
  attach();
  zero_weights();
}

}  // namespace retort::trainer
