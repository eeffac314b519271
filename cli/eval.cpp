// `retort eval <run_dir or checkpoint> [more ...] [overrides...]` (several: each, then their ensemble)
#include <CLI/CLI.hpp>

#include <iomanip>
#include <iostream>

#include "cli/commands.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "data/data.h"
#include "distill/distill.h"
#include "launch/communicator.h"
#include "launch/world.h"
#include "models/models.h"
#include "trainer/checkpoint_model.h"
#include "trainer/trainer.h"

namespace retort::cli {
namespace {

int eval(launch::World& world, const Args& positionals) {
  const Positionals p =
      split_positionals(positionals, "eval", "checkpoint (a run or checkpoint directory)", 1, SIZE_MAX);
  std::vector<trainer::CheckpointModel> runs;
  for (const auto& where : p.inputs) runs.push_back(trainer::load_checkpoint_model(where));
  // Every run's config takes the overrides (so a bad one is named whichever run it breaks);
  // data, threads, device and amp are the first run's.
  std::vector<RunConfig> configs;
  for (const auto& run : runs) configs.push_back(checkpoint_run_config(run.checkpoint, p.overrides));
  const RunConfig& rc = configs.front();
  rc.data.validate();
  trainer::set_threads(rc.trainer.threads);
  const torch::Device device = world.pick_device(rc.trainer.device);
  auto comm = launch::make_communicator(world, device);
  auto test_set = data::load_dataset(rc.data, "test", window_shape(rc));
  auto report = [&](models::Model& model, const std::string& what) {
    auto r = trainer::evaluate(model, test_set, rc.data, device, *comm, rc.amp);
    if (comm->rank() != 0) return;
    const auto record = trainer::eval_record(r, test_set);
    std::cout << what << "\ntest loss " << std::fixed << std::setprecision(6) << r.loss << "  accuracy "
              << std::setprecision(2) << 100.0 * r.accuracy << " %";
    if (record.contains("ppl")) std::cout << "  perplexity " << std::setprecision(3) << record["ppl"].get<double>();
    if (record.contains("bpb")) std::cout << "  bits per byte " << std::setprecision(4) << record["bpb"].get<double>();
    std::cout << "  (" << r.samples << (test_set.text ? " tokens" : " samples") << ")\n" << std::defaultfloat;
  };
  std::vector<std::shared_ptr<models::Model>> models;
  for (auto& run : runs) {
    run.model->to(device);
    const auto& ckpt = run.checkpoint;
    report(*run.model, "checkpoint " + ckpt.dir.string() + " (step " + std::to_string(ckpt.step) + ")");
    models.push_back(run.model);
  }
  // Several checkpoints: also their ensemble, as distill.teacher.ensemble would teach with it.
  if (models.size() > 1) {
    distill::TeacherEnsemble ensemble(models, "eval");
    report(ensemble, "ensemble of " + std::to_string(models.size()) + " (mean logits)");
  }
  return kExitOk;
}

}  // namespace

CommandRun define_eval(CLI::App& app) {
  auto positionals = std::make_shared<Args>();
  app.add_option("args", *positionals,
                 "run or checkpoint directories (several: each, then their ensemble), then overrides of their "
                 "configs (key=value ...; data.root=... to evaluate on data kept elsewhere)");
  return [positionals](launch::World& world) { return eval(world, *positionals); };
}

}  // namespace retort::cli
