#pragma once
/// A run directory made from another run's checkpoint by a command (prune, quantize): the
/// source's config composed again with the command line, and the result written as a run
/// that eval, export, report and train (prune.from) read like any other.
///   auto composed = compose_derived(source, overrides, {{"run.dir", "outputs/quantize/x"}});
///   RunConfig rc = read_run_config(composed.config);
///   write_derived_run(rc, source, overrides, {composed.config, source.step, tensors, {}, "quantize.md", text});
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cli/run_config.h"
#include "config/config.h"
#include "trainer/checkpoint.h"

namespace retort::cli {

/// `source`'s stored config over the schema of every declared key (so
/// `quant.x=...` needs no `+` even where the run had no such section), with the
/// command's `defaults` (a "section.key" each: run.dir at least) set, composed
/// with the command line's `overrides`.
config::Composed compose_derived(const trainer::Checkpoint& source, const std::vector<std::string>& overrides,
                                 const std::map<std::string, std::string>& defaults);

struct DerivedRun {
  YAML::Node config;                           ///< the run's composed config, as it is to be stored
  int64_t step = 0;                            ///< the checkpoint's
  std::map<std::string, torch::Tensor> model;  ///< the checkpoint's model tensors
  std::map<std::string, torch::Tensor> state;  ///< and its state (pruning masks as task.*)
  std::string summary_file;                    ///< written beside config/ and checkpoints/
  std::string summary;
};

/// Writes rc.run.dir: config/{recipe,overrides,config}.yaml, a checkpoint,
/// `summary_file`. Returns the checkpoint's path. An unwritable run.dir is an
/// Error naming run.dir before anything is written.
std::filesystem::path write_derived_run(const RunConfig& rc, const trainer::Checkpoint& source,
                                        const std::vector<std::string>& overrides, const DerivedRun& run);

/// The first `samples` training inputs of the run's data (token windows, or
/// normalised images), in batches of data.batch_size: what calibration passes
/// see. `key` names the setting that asked for them in errors.
std::vector<torch::Tensor> first_training_inputs(const RunConfig& rc, int64_t samples, const std::string& key);

}  // namespace retort::cli
