#include "trainer/task.h"

#include "amp/ops.h"

namespace retort::trainer {

NamedParams Task::trainable() {
  NamedParams out;
  for (const auto& kv : model().named_parameters())
    if (kv.value().requires_grad()) out.emplace_back(kv.key(), kv.value());
  for (const auto& [prefix, module] : extra_modules())
    for (const auto& kv : module->named_parameters())
      if (kv.value().requires_grad()) out.emplace_back(prefix + "." + kv.key(), kv.value());
  return out;
}

void Task::train(bool on) {
  model().train(on);
  for (auto& kv : extra_modules()) kv.second->train(on);
}

void Task::to(const torch::Device& device) {
  model().to(device);
  for (auto& kv : extra_modules()) kv.second->to(device);
}

Losses SupervisedTask::loss(const torch::Tensor& x, const data::Labels& labels) {
  auto out = model_->forward(x);
  // A language model predicts every position: cross_entropy takes [B, T, V] logits against
  // [B, T] next tokens as rows over the leading dims.
  auto ce = labels.mix([&](const torch::Tensor& y) { return amp::cross_entropy(out.logits, y, labels.smoothing); });
  return {ce, {{"ce", ce}}, out.logits};
}

}  // namespace retort::trainer
