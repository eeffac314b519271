#pragma once
/// Eval mode (no dropout, batch norm from its running statistics) for a scope; the
/// module's own mode again after, however the scope ends.
///   { models::EvalScope eval(model);  model.forward(x); }   // model.is_training() as before
#include <torch/torch.h>

namespace retort::models {

class EvalScope {
 public:
  explicit EvalScope(torch::nn::Module& module) : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~EvalScope() { module_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

}  // namespace retort::models
