#include "cli/run_config.h"

#include "core/error.h"

namespace retort::cli {

RunConfig read_run_config(const YAML::Node& tree) {
  RunConfig rc;
  rc.tree = tree;
  config::Reader reader(tree);
  rc.run = reader.section<trainer::RunOptions>("run");
  rc.trainer = reader.section<trainer::TrainerOptions>("trainer");
  rc.optim = reader.section<trainer::OptimOptions>("optim");
  rc.data = reader.section<data::DataOptions>("data");
  rc.model = reader.section<models::ModelOptions>("model");
  rc.amp = reader.section<amp::AmpOptions>("amp");
  rc.ddp = reader.section<trainer::DdpOptions>("ddp");
  rc.distill = reader.section<distill::DistillOptions>("distill");
  rc.prune = reader.section<prune::PruneOptions>("prune");
  rc.quant = reader.section<quant::QuantOptions>("quant");
  reader.finish();
  return rc;
}

std::vector<config::KeyInfo> describe_run_config() {
  std::vector<config::KeyInfo> keys;
  auto add = [&](std::vector<config::KeyInfo> more) { keys.insert(keys.end(), more.begin(), more.end()); };
  add(config::describe<trainer::RunOptions>("run"));
  add(config::describe<trainer::TrainerOptions>("trainer"));
  add(config::describe<trainer::OptimOptions>("optim"));
  add(config::describe<data::DataOptions>("data"));
  add(config::describe<models::ModelOptions>("model"));
  add(config::describe<amp::AmpOptions>("amp"));
  add(config::describe<trainer::DdpOptions>("ddp"));
  add(config::describe<distill::DistillOptions>("distill"));
  add(config::describe<prune::PruneOptions>("prune"));
  add(config::describe<quant::QuantOptions>("quant"));
  return keys;
}

std::string run_config_schema_yaml() {
  YAML::Node root(YAML::NodeType::Map);
  for (const auto& key : describe_run_config()) {
    // Walk/create the dotted path, then set the default (already YAML text).
    std::vector<std::string> parts;
    size_t b = 0;
    while (true) {
      size_t e = key.path.find('.', b);
      parts.push_back(key.path.substr(b, e - b));
      if (e == std::string::npos) break;
      b = e + 1;
    }
    std::vector<YAML::Node> chain{root};
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      YAML::Node child = chain.back()[parts[i]];
      if (!child.IsMap()) chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      chain.push_back(chain.back()[parts[i]]);
    }
    chain.back()[parts.back()] = YAML::Load(key.default_value);
  }
  return config::emit(root);
}

config::Composed compose_stored(const std::string& config_yaml, const std::filesystem::path& origin,
                                const std::vector<std::string>& overrides) {
  config::ComposeRequest request;
  request.recipe = origin;
  request.recipe_text = config_yaml;
  request.overrides = overrides;
  request.schema_yaml = run_config_schema_yaml();
  return config::compose(request);
}

RunConfig checkpoint_run_config(const trainer::Checkpoint& ckpt, const std::vector<std::string>& overrides) {
  try {
    return read_run_config(compose_stored(ckpt.config_yaml, ckpt.dir / "config.yaml", overrides).config);
  } catch (const ConfigError& e) {
    throw ConfigError("the config of " + ckpt.dir.string() + ": " + e.what());
  }
}

data::WindowShape window_shape(const RunConfig& rc) {
  if (!rc.model.language_model()) return {};
  return {rc.model.context, rc.model.vocab_size, static_cast<uint64_t>(rc.trainer.seed)};
}

}  // namespace retort::cli
