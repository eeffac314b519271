// `retort eval <run_dir or checkpoint> [more ...] [overrides...]` (several: each, then their ensemble) and
// `retort export <run_dir or checkpoint> <out.safetensors>`
#include <iomanip>
#include <iostream>

#include "cli/commands.h"
#include "cli/prune.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/data.h"
#include "distill/distill.h"
#include "launch/communicator.h"
#include "launch/world.h"
#include "models/models.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"

namespace retort::cli {
namespace {

struct Loaded {
  trainer::Checkpoint ckpt;
  RunConfig rc;
};

/// The checkpoint and the config it was trained with, command-line overrides applied
/// (e.g. data.root=... to evaluate on data elsewhere).
Loaded load_checkpoint(const std::string& where, const std::vector<std::string>& overrides) {
  Loaded l;
  l.ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(where));
  l.rc = read_run_config(compose_stored(l.ckpt.config_yaml, l.ckpt.dir / "config.yaml", overrides).config);
  return l;
}

}  // namespace

int eval(launch::World& world, const Args& args) {
  // Checkpoints first, then overrides: `retort eval a [b ...] [key=value ...]`.
  size_t n = 0;
  while (n < args.size() && args[n].find('=') == std::string::npos) ++n;
  if (n == 0)
    throw UsageError("eval: missing checkpoint (usage: retort eval <run_dir or checkpoint> [more ...] [key=value ...])");
  const std::vector<std::string> overrides(args.begin() + static_cast<std::ptrdiff_t>(n), args.end());
  std::vector<Loaded> runs;
  for (size_t i = 0; i < n; ++i) runs.push_back(load_checkpoint(args[i], overrides));
  const RunConfig& rc = runs.front().rc;  // data, threads, device and amp: the first run's
  rc.data.validate();
  trainer::set_threads(rc.trainer.threads);
  const torch::Device device = world.pick_device(rc.trainer.device);
  auto comm = launch::make_communicator(world, device);
  auto test_set = data::load_dataset(rc.data, "test");
  std::vector<std::shared_ptr<models::Model>> models;
  auto report = [&](models::Model& model, const std::string& what) {
    auto r = trainer::evaluate(model, test_set, rc.data, device, *comm, rc.amp);
    if (comm->rank() == 0)
      std::cout << what << "\ntest loss " << std::fixed << std::setprecision(6) << r.loss << "  accuracy "
                << std::setprecision(2) << 100.0 * r.accuracy << " %  (" << r.samples << " samples)\n"
                << std::defaultfloat;
  };
  for (auto& l : runs) {
    auto model = models::make_model(l.rc.model);
    models::load_weights(*model, l.ckpt.model, (l.ckpt.dir / "model.safetensors").string());
    model->to(device);
    report(*model, "checkpoint " + l.ckpt.dir.string() + " (step " + std::to_string(l.ckpt.step) + ")");
    models.push_back(std::move(model));
  }
  // Several checkpoints: also their ensemble, as distill.teacher.ensemble would teach with it.
  if (models.size() > 1) {
    distill::TeacherEnsemble ensemble(models, "eval");
    report(ensemble, "ensemble of " + std::to_string(models.size()) + " (mean logits)");
  }
  return kExitOk;
}

int export_weights(launch::World& world, const Args& args) {
  if (args.size() != 2)
    throw UsageError("export: usage: retort export <run_dir or checkpoint> <out.safetensors>");
  if (world.rank() != 0) return kExitOk;
  const auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(args[0]));
  const std::filesystem::path out = args[1];
  ensure_writable_dir(out.has_parent_path() ? out.parent_path() : std::filesystem::path("."));
  // Only the model: distillation projections and optimizer state stay in the checkpoint.
  // A structured-pruned model is written compacted (removed channels physically gone).
  auto weights = ckpt.model;
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"retort.step", std::to_string(ckpt.step)}};
  if (auto compacted = compact_checkpoint(ckpt)) {
    weights = compacted->weights;
    meta["retort.model"] = compacted->model_yaml;
    std::cout << "compacted: " << compacted->params_before << " -> " << compacted->params_after << " parameters\n";
  }
  models::save_safetensors(out, weights, meta);
  int64_t params = 0;
  for (const auto& kv : weights) params += kv.second.numel();
  std::cout << "wrote " << out.string() << ": " << weights.size() << " tensors, " << params << " values (step "
            << ckpt.step << ")\n";
  return kExitOk;
}

std::string usage() {
  return "retort " RETORT_VERSION " - distill, train, prune and export compact models\n\n"
         "usage: retort <command> [args]\n\n"
         "commands:\n"
         "  train <recipe.yaml> [key=value ...]   train (mpirun -np N retort train ... for N ranks)\n"
         "        --cfg   print the resolved config and exit\n"
         "        --help  list config groups and every key with type, default and help\n"
         "        -m      sweep: key=a,b runs one run per value (cartesian product)\n"
         "  eval <run_dir | checkpoint> [more ...] [key=value ...]   test loss and accuracy (several: each, then\n"
         "        their ensemble, mean logits)\n"
         "  export <run_dir | checkpoint> <out.safetensors>   model weights for PyTorch\n"
         "  report <run_dir> [<run_dir> ...] [--out DIR]   parameters, accuracy, latency, memory side by side\n"
         "  prune <run_dir | checkpoint> prune.method=... prune.sparsity=...   [--scan]\n\n"
         "  --help, --version\n\n"
         "exit codes: 0 ok, 1 other error, 2 usage or config error, 3 data error, 4 checkpoint error\n";
}

}  // namespace retort::cli
