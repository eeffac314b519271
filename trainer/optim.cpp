#include "trainer/optim.h"

#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "core/error.h"

namespace retort::trainer {
namespace {

// LibTorch keys per-parameter optimizer state by the address of the TensorImpl: printed
// into a std::string in 1.13, the address itself (void*) in 2.x. The one place that knows it;
// the key type is read off the optimizer's own map, so either LibTorch builds.
using StateKey = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;

template <typename Key = StateKey>
Key state_key(const torch::Tensor& p) {
  void* impl = p.unsafeGetTensorImpl();
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;  // as c10::guts::to_string(void*) printed it
    s << impl;
    return s.str();
  } else {
    return impl;
  }
}

bool is_adamw(torch::optim::Optimizer& o) { return dynamic_cast<torch::optim::AdamW*>(&o) != nullptr; }

void check_shape(const std::string& key, const torch::Tensor& got, const torch::Tensor& param) {
  if (got.sizes() != param.sizes())
    throw CheckpointError("optimizer state '" + key + "' has shape " + c10::str(got.sizes()) +
                          " but the parameter has " + c10::str(param.sizes()));
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimOptions& o, const NamedParams& params) {
  std::vector<torch::Tensor> tensors;
  for (const auto& kv : params) tensors.push_back(kv.second);
  if (o.name == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        tensors, torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  }
  if (o.name == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        tensors, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  }
  throw ConfigError("optim.name: unknown optimizer '" + o.name + "' (known: adamw, sgd)");
}

void clip_grad_norm(torch::optim::Optimizer& optimizer, double max_norm) {
  std::vector<torch::Tensor> params;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) params.push_back(p);
  torch::nn::utils::clip_grad_norm_(params, max_norm);
}

void set_lr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

std::map<std::string, torch::Tensor> optimizer_state(torch::optim::Optimizer& optimizer, const NamedParams& params) {
  std::map<std::string, torch::Tensor> out;
  auto& state = optimizer.state();
  const bool adamw = is_adamw(optimizer);
  for (const auto& [name, p] : params) {
    auto it = state.find(state_key(p));
    if (it == state.end()) continue;
    if (adamw) {
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      out["step." + name] = torch::tensor(s.step(), torch::kInt64);
      out["exp_avg." + name] = s.exp_avg().detach().to(torch::kCPU).clone();
      out["exp_avg_sq." + name] = s.exp_avg_sq().detach().to(torch::kCPU).clone();
    } else {
      auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
      if (s.momentum_buffer().defined()) out["momentum_buffer." + name] = s.momentum_buffer().detach().to(torch::kCPU).clone();
    }
  }
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const NamedParams& params,
                          const std::map<std::string, torch::Tensor>& state) {
  auto& slots = optimizer.state();
  slots.clear();
  const bool adamw = is_adamw(optimizer);
  size_t used = 0;
  for (const auto& [name, p] : params) {
    auto get = [&](const std::string& field) -> const torch::Tensor* {
      auto it = state.find(field + "." + name);
      return it == state.end() ? nullptr : &it->second;
    };
    if (adamw) {
      const auto *step = get("step"), *m = get("exp_avg"), *v = get("exp_avg_sq");
      if (!step && !m && !v) continue;
      if (!step || !m || !v) throw CheckpointError("optimizer state for '" + name + "' is incomplete");
      check_shape("exp_avg." + name, *m, p);
      check_shape("exp_avg_sq." + name, *v, p);
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(step->item<int64_t>());
      s->exp_avg(m->to(p.options()).clone());
      s->exp_avg_sq(v->to(p.options()).clone());
      slots[state_key(p)] = std::move(s);
      used += 3;
    } else {
      const auto* buf = get("momentum_buffer");
      if (!buf) continue;
      check_shape("momentum_buffer." + name, *buf, p);
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(buf->to(p.options()).clone());
      slots[state_key(p)] = std::move(s);
      used += 1;
    }
  }
  if (used != state.size()) {
    for (const auto& kv : state) {
      auto dot = kv.first.find('.');
      std::string pname = dot == std::string::npos ? kv.first : kv.first.substr(dot + 1);
      bool known = false;
      for (const auto& np : params) known = known || np.first == pname;
      if (!known) throw CheckpointError("optimizer state '" + kv.first + "' belongs to no parameter of this model");
    }
    throw CheckpointError("optimizer state does not match the optimizer (" + std::to_string(state.size()) +
                          " tensors, " + std::to_string(used) + " used): was it written by another optimizer?");
  }
}

}  // namespace retort::trainer
