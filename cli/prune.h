#pragma once
/// The pieces of pruning that other commands use (train's prune.from, export's
/// compaction); the `retort prune` command itself is define_prune (cli/commands.h).
///   retort prune outputs/fmnist-teacher/<date>/<time> prune.method=l1_structured prune.sparsity=0.4
///   retort prune <run> prune.method=l1_structured --scan     # sensitivity per layer
#include <filesystem>
#include <map>
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

/// For export: when the checkpoint's masks remove whole channels, the compacted model's
/// weights and options; nullopt when there are no masks or nothing to compact.
struct CompactedWeights {
  std::map<std::string, torch::Tensor> weights;
  models::ModelOptions options;
  std::string model_yaml;  ///< options as a `model:` section (flow YAML), for metadata
  int64_t params_before = 0, params_after = 0;
};
std::optional<CompactedWeights> compact_checkpoint(const trainer::Checkpoint& ckpt);

}  // namespace retort::cli
