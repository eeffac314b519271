#include "prune/masks.h"

#include <unordered_map>

#include "config/config.h"
#include "core/error.h"
#include "core/text.h"

namespace retort::prune {
namespace {

std::string shape_text(c10::IntArrayRef s) { return "[" + join(s.vec(), [](int64_t d) { return std::to_string(d); }) + "]"; }

}  // namespace

void Masks::set(const std::string& param, const torch::Tensor& keep) {
  if (param.empty()) throw Error("Masks::set: empty parameter name");
  masks_[param] = keep.detach().to(torch::kCPU).ne(0).contiguous();
}

const torch::Tensor& Masks::at(const std::string& param) const {
  auto it = masks_.find(param);
  if (it == masks_.end()) throw Error("no pruning mask for parameter '" + param + "'");
  return it->second;
}

void Masks::intersect(const Masks& other) {
  for (const auto& [name, mask] : other.masks_) {
    auto it = masks_.find(name);
    if (it == masks_.end()) {
      masks_[name] = mask;
      continue;
    }
    if (!it->second.sizes().equals(mask.sizes()))
      throw Error("pruning masks of '" + name + "' differ in shape: " + shape_text(it->second.sizes()) + " vs " +
                  shape_text(mask.sizes()));
    it->second = it->second.logical_and(mask);
  }
}

void Masks::drop_full() {
  for (auto it = masks_.begin(); it != masks_.end();) {
    if (it->second.all().item<bool>()) it = masks_.erase(it);
    else ++it;
  }
}

int64_t Masks::pruned() const {
  int64_t n = 0;
  for (const auto& kv : masks_) n += kv.second.numel() - kv.second.sum().item<int64_t>();
  return n;
}

void Masks::check(const torch::nn::Module& module, const std::string& origin) const {
  std::unordered_map<std::string, torch::Tensor> params;
  std::vector<std::string> names;
  for (const auto& kv : module.named_parameters()) {
    params[kv.key()] = kv.value();
    names.push_back(kv.key());
  }
  std::string problems;
  for (const auto& [name, mask] : masks_) {
    auto it = params.find(name);
    if (it == params.end()) {
      const std::string near = config::suggest(name, names);
      problems += "\n  mask for unknown parameter '" + name + "'" + (near.empty() ? "" : " (did you mean '" + near + "'?)");
    } else if (!it->second.sizes().equals(mask.sizes())) {
      problems += "\n  mask '" + name + "' has shape " + shape_text(mask.sizes()) + ", the parameter " +
                  shape_text(it->second.sizes());
    }
  }
  if (!problems.empty()) throw CheckpointError("pruning masks from " + origin + " do not fit the model:" + problems);
}

void Masks::apply(torch::nn::Module& module) const {
  check(module, "Masks::apply");
  torch::NoGradGuard no_grad;
  auto params = module.named_parameters();
  for (const auto& [name, mask] : masks_) {
    auto& p = params[name];
    p.masked_fill_(mask.logical_not().to(p.device()), 0);
  }
}

std::map<std::string, torch::Tensor> Masks::state_dict() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, mask] : masks_) out["mask." + name] = mask.clone();
  return out;
}

Masks Masks::from_state_dict(const std::map<std::string, torch::Tensor>& state) {
  static const std::string prefix = "mask.";
  Masks m;
  for (const auto& [key, t] : state)
    if (key.rfind(prefix, 0) == 0) m.set(key.substr(prefix.size()), t);
  return m;
}

void Masks::broadcast(launch::Communicator& comm, int root) {
  if (comm.size() == 1) return;
  // Names first: a rank with other masks would otherwise pair tensors of different
  // parameters (or hang on a count mismatch) in the loop below.
  std::string names;
  for (const auto& [name, mask] : masks_) names += name + shape_text(mask.sizes()) + ";";
  std::string from_root = names;
  comm.broadcast_string(from_root, root);
  if (from_root != names)
    throw CommError("rank " + std::to_string(comm.rank()) + ": pruning masks differ from rank " +
                    std::to_string(root) + "'s (parameters or shapes); every rank must load the same pruned run");
  for (auto& [name, mask] : masks_) {
    auto buffer = mask.to(torch::kUInt8).to(comm.device()).contiguous();
    comm.broadcast(buffer, root);
    mask = buffer.to(torch::kCPU).ne(0).contiguous();
  }
}

}  // namespace retort::prune
