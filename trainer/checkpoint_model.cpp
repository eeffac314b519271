#include "trainer/checkpoint_model.h"

#include "config/config.h"
#include "core/error.h"
#include "models/weights.h"
#include "quant/quantize.h"

namespace retort::trainer {
namespace {

std::string config_file(const Checkpoint& ckpt) { return (ckpt.dir / "config.yaml").string(); }

}  // namespace

models::ModelOptions checkpoint_model_options(const Checkpoint& ckpt) {
  const std::string file = config_file(ckpt);
  const YAML::Node config = config::parse(ckpt.config_yaml, file);
  if (!config.IsMap() || !config["model"])
    throw CheckpointError(file + ": no `model:` section; cannot tell which model the weights are");
  try {
    return models::read_model_options(config["model"], "model");
  } catch (const ConfigError& e) {
    throw ConfigError(file + ": " + e.what());
  }
}

std::shared_ptr<models::Model> checkpoint_model(const Checkpoint& ckpt) {
  const auto options = checkpoint_model_options(ckpt);
  std::shared_ptr<models::Model> model;
  try {
    model = models::make_model(options);
  } catch (const ConfigError& e) {
    throw ConfigError(config_file(ckpt) + ": " + e.what());
  }
  const std::string weights = (ckpt.dir / "model.safetensors").string();
  if (models::has_int8_layers(ckpt.model))
    quant::load_int8(*model, ckpt.model, weights);  // a `retort quantize` run
  else
    models::load_weights(*model, ckpt.model, weights);
  model->eval();
  return model;
}

CheckpointModel load_checkpoint_model(const fs::path& run_or_checkpoint) {
  CheckpointModel loaded;
  loaded.checkpoint = Checkpointer::load(Checkpointer::resolve(run_or_checkpoint));
  loaded.model = checkpoint_model(loaded.checkpoint);
  return loaded;
}

}  // namespace retort::trainer
