#include "amp/master_weights.h"

#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"

namespace retort::amp {

bool is_norm_module(const torch::nn::Module& m) {
  using namespace torch::nn;
  return dynamic_cast<const BatchNorm1dImpl*>(&m) || dynamic_cast<const BatchNorm2dImpl*>(&m) ||
         dynamic_cast<const BatchNorm3dImpl*>(&m) || dynamic_cast<const InstanceNorm1dImpl*>(&m) ||
         dynamic_cast<const InstanceNorm2dImpl*>(&m) || dynamic_cast<const InstanceNorm3dImpl*>(&m) ||
         dynamic_cast<const LayerNormImpl*>(&m) || dynamic_cast<const GroupNormImpl*>(&m);
}

MasterWeights::MasterWeights(torch::nn::Module& model, MasterWeightsOptions options) : options_(std::move(options)) {
  if (options_.dtype() != torch::kBFloat16 && options_.dtype() != torch::kHalf) {
    throw Error(std::string("amp::MasterWeights: dtype must be bf16 or fp16, got ") + c10::toString(options_.dtype()));
  }
  collect("", model, false);
}

void MasterWeights::collect(const std::string& prefix, torch::nn::Module& module, bool keep) {
  const std::string module_name = prefix.empty() ? "" : prefix.substr(0, prefix.size() - 1);
  keep = keep || (options_.keep_norm_fp32() && is_norm_module(module)) ||
         (options_.keep_fp32() && options_.keep_fp32()(module_name, module));
  for (const auto& item : module.named_parameters(/*recurse=*/false)) {
    torch::Tensor p = item.value();
    if (!seen_.insert(p.unsafeGetTensorImpl()).second) continue;  // tied weights: one master
    const auto t = p.scalar_type();
    const bool convertible = t == torch::kFloat || t == torch::kBFloat16 || t == torch::kHalf;
    Entry e{prefix + item.key(), p, p, false};
    if (convertible && !keep) {
      torch::NoGradGuard no_grad;
      e.master = p.detach().to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true).requires_grad_(p.requires_grad());
      p.set_data(p.detach().to(options_.dtype()));
      p.mutable_grad().reset();  // an fp32 gradient left from before would not match
      e.converted = true;
    }
    entries_.push_back(std::move(e));
  }
  for (const auto& child : module.named_children()) collect(prefix + child.key() + ".", *child.value(), keep);
}

MasterWeights::MasterWeights(torch::nn::Module& model, torch::ScalarType dtype, bool keep_norm_fp32)
    : MasterWeights(model, MasterWeightsOptions().dtype(dtype).keep_norm_fp32(keep_norm_fp32)) {}

MasterWeights::NamedTensors MasterWeights::master_params(const NamedTensors& params) const {
  std::unordered_map<const c10::TensorImpl*, torch::Tensor> master_of;
  for (const auto& e : entries_) master_of.emplace(e.param.unsafeGetTensorImpl(), e.master);
  NamedTensors out;
  out.reserve(params.size());
  for (const auto& [name, p] : params) {
    auto it = p.defined() ? master_of.find(p.unsafeGetTensorImpl()) : master_of.end();
    out.emplace_back(name, it != master_of.end() ? it->second : p);
  }
  return out;
}

std::vector<torch::Tensor> MasterWeights::parameters() const {
  std::vector<torch::Tensor> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.master);
  return out;
}

MasterWeights::NamedTensors MasterWeights::named_parameters() const {
  NamedTensors out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.emplace_back(e.name, e.master);
  return out;
}

std::vector<std::string> MasterWeights::fp32_parameter_names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) {
    if (!e.converted) out.push_back(e.name);
  }
  return out;
}

void MasterWeights::copy_grads_to_master() {
  torch::NoGradGuard no_grad;
  for (auto& e : entries_) {
    if (!e.converted) continue;
    const auto& g = e.param.grad();
    auto& mg = e.master.mutable_grad();
    if (!g.defined()) {
      mg.reset();
    } else if (!mg.defined()) {
      mg = g.to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true);
    } else {
      mg.copy_(g);
    }
  }
}

void MasterWeights::copy_master_to_model() {
  torch::NoGradGuard no_grad;
  for (auto& e : entries_) {
    if (e.converted) e.param.copy_(e.master);
  }
}

void MasterWeights::zero_model_grads() {
  for (auto& e : entries_) {
    if (e.converted) e.param.mutable_grad().reset();
  }
}

void MasterWeights::zero_grad() {
  for (auto& e : entries_) {
    e.param.mutable_grad().reset();
    e.master.mutable_grad().reset();
  }
}

std::map<std::string, torch::Tensor> MasterWeights::state_dict() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& e : entries_) out[e.name] = e.master.detach().clone();
  return out;
}

void MasterWeights::load_state_dict(const std::map<std::string, torch::Tensor>& state) {
  // Check everything first, so a bad checkpoint leaves the weights as they were.
  std::unordered_set<std::string> known;
  for (const auto& e : entries_) {
    known.insert(e.name);
    auto it = state.find(e.name);
    if (it == state.end()) throw CheckpointError("MasterWeights state: missing key '" + e.name + "'");
    const auto& t = it->second;
    if (!t.defined() || t.sizes() != e.master.sizes() || !t.is_floating_point()) {
      std::ostringstream os;
      os << "MasterWeights state: key '" << e.name << "' must be a floating tensor of shape " << e.master.sizes()
         << ", got ";
      if (t.defined()) {
        os << c10::toString(t.scalar_type()) << " " << t.sizes();
      } else {
        os << "an undefined tensor";
      }
      throw CheckpointError(os.str());
    }
  }
  for (const auto& [key, value] : state) {
    if (!known.count(key)) throw CheckpointError("MasterWeights state: unexpected key '" + key + "'");
  }
  torch::NoGradGuard no_grad;
  for (auto& e : entries_) e.master.copy_(state.at(e.name));
  copy_master_to_model();
}

}  // namespace retort::amp
