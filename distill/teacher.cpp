#include "distill/teacher.h"

#include <vector>

#include "config/config.h"
#include "core/error.h"
#include "models/weights.h"

namespace retort::distill {

void freeze(models::Model& model) {
  for (auto& p : model.parameters()) p.set_requires_grad(false);
  model.eval();
}

std::shared_ptr<models::Model> load_teacher_weights(const models::ModelOptions& options,
                                                    const std::map<std::string, torch::Tensor>& weights,
                                                    const std::string& origin) {
  auto model = models::make_model(options);
  models::load_weights(*model, weights, origin);
  freeze(*model);
  return model;
}

models::ModelOptions read_model_options(const YAML::Node& node, const std::string& key) {
  if (!node.IsDefined() || node.IsNull() || !node.IsMap())
    throw ConfigError(key + ": expected a map of model keys (name, channels, ...), got " +
                      (node.IsDefined() && !node.IsNull() ? "a " + std::string(node.IsSequence() ? "list" : "scalar")
                                                          : std::string("nothing")));
  // Re-rooted under `key` so every message the reader gives names the full path.
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  YAML::Node tree = YAML::Clone(node);
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    YAML::Node parent(YAML::NodeType::Map);
    parent[*it] = tree;
    tree = parent;
  }
  config::Reader reader(tree);
  auto options = reader.section<models::ModelOptions>(key);
  reader.finish();
  return options;
}

}  // namespace retort::distill
