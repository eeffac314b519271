#include <map>
#include <mutex>

#include "core/error.h"
#include "models/cnn.h"
#include "models/model.h"

namespace retort::models {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, ModelFactory> factories;
  Registry() {
    factories["cnn"] = [](const ModelOptions& o) { return std::make_shared<Cnn>(o); };
    factories["mlp"] = [](const ModelOptions& o) { return std::make_shared<Mlp>(o); };
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_model(const std::string& name, ModelFactory factory) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().factories[name] = std::move(factory);
}

std::vector<std::string> model_names() {
  std::lock_guard<std::mutex> lock(registry().mutex);
  std::vector<std::string> names;
  for (const auto& kv : registry().factories) names.push_back(kv.first);
  return names;
}

std::shared_ptr<Model> make_model(const ModelOptions& options) {
  ModelFactory factory;
  {
    std::lock_guard<std::mutex> lock(registry().mutex);
    auto it = registry().factories.find(options.name);
    if (it != registry().factories.end()) factory = it->second;
  }
  if (!factory) {
    std::string known;
    for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
    throw ConfigError("model.name: unknown model '" + options.name + "' (known: " + known + ")");
  }
  return factory(options);
}

int64_t count_parameters(const torch::nn::Module& module, bool trainable_only) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

std::vector<std::pair<std::string, torch::Tensor>> named_state(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& kv : module.named_parameters()) out.emplace_back(kv.key(), kv.value());
  for (const auto& kv : module.named_buffers()) out.emplace_back(kv.key(), kv.value());
  return out;
}

}  // namespace retort::models
