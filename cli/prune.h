#pragma once
/// The pieces of pruning that other commands use (train's prune.from, export's
/// compaction); the `retort prune` command itself is define_prune (cli/commands.h).
///   retort prune outputs/fmnist-teacher/<date>/<time> prune.method=l1_structured prune.sparsity=0.4
///   retort prune <run> prune.method=l1_structured --scan     # sensitivity per layer
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <yaml-cpp/yaml.h>

#include "models/model.h"
#include "prune/masks.h"
#include "trainer/checkpoint.h"

namespace retort::cli {

/// What `prune.from` names: the pruned run's model (its own options: a compacted model
/// has other widths than the recipe's), weights and masks.
struct PrunedStart {
  std::filesystem::path checkpoint;              ///< the checkpoint directory read
  models::ModelOptions model;                    ///< from the `model:` section of its config
  YAML::Node model_section;                      ///< that section as written
  std::map<std::string, torch::Tensor> weights;  ///< model.safetensors
  prune::Masks masks;                            ///< task.mask.* (empty for a purely structured, compacted model)
};

/// Reads a pruned run or checkpoint directory; CheckpointError naming it when it is not
/// one (no checkpoint, or a config without a `model:` section).
PrunedStart load_pruned_start(const std::string& from);

/// For train: with prune.from set, replaces the `model:` section of `config` by the pruned
/// run's (so the run's config.yaml describes the model it trains) and returns the start;
/// nullopt when prune.from is empty. Call before building the model from the config.
std::optional<PrunedStart> resolve_prune_from(YAML::Node& config);

/// How export compacted a structured-pruned model.
struct Compaction {
  models::ModelOptions options;  ///< the compacted model's
  std::string model_yaml;        ///< options as a `model:` section (flow YAML), for metadata
  int64_t params_before = 0, params_after = 0;
};

/// For export: the model a checkpoint computes with, in eval mode. Its pruning masks are
/// applied (pruned weights exactly zero, whatever the stored weights hold); where they
/// remove whole channels the model is compacted, and `compaction` says how.
struct ExportedModel {
  std::shared_ptr<models::Model> model;
  std::optional<Compaction> compaction;
};
/// CheckpointError naming state.safetensors when a mask names no parameter of the model or
/// has another shape.
ExportedModel exported_model(const trainer::Checkpoint& ckpt);

}  // namespace retort::cli
