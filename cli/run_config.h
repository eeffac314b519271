#pragma once
/// The typed view of a composed recipe: every section read and validated in one pass, so
/// that all problems are reported together before any work starts.
///   RunConfig rc = read_run_config(composed.config);   // ConfigError listing every problem
#include <yaml-cpp/yaml.h>

#include <vector>

#include "amp/options.h"
#include "config/config.h"
#include "data/options.h"
#include "distill/options.h"
#include "models/model.h"
#include "prune/options.h"
#include "quant/options.h"
#include "trainer/checkpoint.h"
#include "trainer/options.h"
#include "trainer/trainer.h"

namespace retort::cli {

struct RunConfig {
  trainer::RunOptions run;
  trainer::TrainerOptions trainer;
  trainer::OptimOptions optim;
  data::DataOptions data;
  models::ModelOptions model;
  amp::AmpOptions amp;
  trainer::DdpOptions ddp;
  distill::DistillOptions distill;  ///< used when distill.teacher is set
  prune::PruneOptions prune;        ///< the prune command; train reads prune.from
  quant::QuantOptions quant;        ///< the quantize command
  YAML::Node tree;  ///< the composed, resolved config
};

RunConfig read_run_config(const YAML::Node& tree);

/// What a language model's token windows take from the run (context and vocabulary of
/// model.*, trainer.seed); empty for the image families.
data::WindowShape window_shape(const RunConfig& rc);

/// Every key the train command understands, for `retort train <recipe> --help`.
std::vector<config::KeyInfo> describe_run_config();

/// Every declared key with its default, as YAML: the base a recipe is composed over
/// (config::ComposeRequest::schema_yaml).
std::string run_config_schema_yaml();

/// A checkpoint's stored config (`config_yaml`, from `origin`) composed again with
/// command-line overrides over the schema of every declared key, so overrides go through
/// the usual grammar (`data.root=...` to evaluate on data kept elsewhere).
config::Composed compose_stored(const std::string& config_yaml, const std::filesystem::path& origin,
                                const std::vector<std::string>& overrides);

/// The typed config `ckpt` was trained with, command-line overrides applied (compose_stored);
/// ConfigError naming the checkpoint directory and the key.
RunConfig checkpoint_run_config(const trainer::Checkpoint& ckpt, const std::vector<std::string>& overrides);

}  // namespace retort::cli
