#include "models/weights.h"

#include <sstream>

#include "core/error.h"
#include "core/text.h"
#include "models/model.h"

namespace retort::models {

std::map<std::string, torch::Tensor> weights_of(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : named_state(module)) out[name] = t.detach().to(torch::kCPU).clone();
  return out;
}

void load_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                  const std::string& origin) {
  auto own = named_state(module);
  std::vector<std::string> missing, misshaped, extra;
  std::map<std::string, bool> seen;
  for (const auto& [name, t] : own) {
    seen[name] = true;
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != t.sizes()) {
      std::ostringstream s;
      s << name << " (file " << it->second.sizes() << ", model " << t.sizes() << ")";
      misshaped.push_back(s.str());
    }
  }
  for (const auto& kv : tensors)
    if (!seen.count(kv.first)) extra.push_back(kv.first);
  if (!missing.empty() || !misshaped.empty() || !extra.empty()) {
    std::ostringstream msg;
    msg << "weights in '" << origin << "' do not fit the model:";
    auto list = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg << " " << what << " [" << join(names) << "];";
    };
    list("missing", missing);
    list("mis-shaped", misshaped);
    list("unexpected", extra);
    throw CheckpointError(msg.str());
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : own) t.copy_(tensors.at(name));
}

void load_weights(Model& model, const std::map<std::string, torch::Tensor>& tensors, const std::string& origin) {
  load_weights(static_cast<torch::nn::Module&>(model), model.normalize_weights(tensors, origin), origin);
}

}  // namespace retort::models
