#include "cli/run_config.h"

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
  return keys;
}

}  // namespace retort::cli
