// `retort eval <run_dir or checkpoint> [overrides...]` and
// `retort export <run_dir or checkpoint> <out.safetensors>`
#include <iostream>

#include "cli/commands.h"
#include "cli/prune.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/data.h"
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
  if (args.empty() || args[0].find('=') != std::string::npos)
    throw UsageError("eval: missing checkpoint (usage: retort eval <run_dir or checkpoint> [key=value ...])");
  const std::vector<std::string> overrides(args.begin() + 1, args.end());
  Loaded l = load_checkpoint(args[0], overrides);
  l.rc.data.validate();
  trainer::set_threads(l.rc.trainer.threads);
  const torch::Device device = world.pick_device(l.rc.trainer.device);
  auto comm = launch::make_communicator(world, device);
  auto test_set = data::load_dataset(l.rc.data, "test");
  auto model = models::make_model(l.rc.model);
  models::load_weights(*model, l.ckpt.model, (l.ckpt.dir / "model.safetensors").string());
  model->to(device);
  auto r = trainer::evaluate(*model, test_set, l.rc.data.eval_batch_size, device, *comm, l.rc.amp);
  if (comm->rank() == 0)
    std::cout << "checkpoint " << l.ckpt.dir.string() << " (step " << l.ckpt.step << ")\n"
              << "test loss " << r.loss << "  accuracy " << 100.0 * r.accuracy << " %  (" << r.samples
              << " samples)\n";
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
         "  eval <run_dir | checkpoint> [key=value ...]   test loss and accuracy\n"
         "  export <run_dir | checkpoint> <out.safetensors>   model weights for PyTorch\n"
         "  report <run_dir> [<run_dir> ...] [--out DIR]   parameters, accuracy, latency, memory side by side\n"
         "  prune <run_dir | checkpoint> prune.method=... prune.sparsity=...   [--scan]\n\n"
         "  --help, --version\n\n"
         "exit codes: 0 ok, 1 other error, 2 usage or config error, 3 data error, 4 checkpoint error\n";
}

}  // namespace retort::cli
