// `retort prune <run_dir or checkpoint> [overrides...] [--scan]` (masks by prune.method, or a
// gpt shrunk to prune.gpt's shape), and what train (prune.from) and export (masks applied,
// compaction) take from pruning.
#include "cli/prune.h"

#include <CLI/CLI.hpp>

#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/derived_run.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/data.h"
#include "launch/communicator.h"
#include "launch/world.h"
#include "models/models.h"
#include "prune/prune.h"
#include "trainer/checkpoint_model.h"
#include "trainer/trainer.h"

namespace retort::cli {
namespace {

namespace fs = std::filesystem;

struct PruneArgs {
  Args positionals;  ///< the run or checkpoint, and the overrides, as given
  bool scan = false;
};

/// The last `n` samples of `d` (the held-out part of the train split for --scan).
data::Dataset tail(const data::Dataset& d, int64_t n) {
  n = std::min(n, d.size());
  data::Dataset out = d;
  out.images = d.images.narrow(0, d.size() - n, n);
  out.labels = d.labels.narrow(0, d.size() - n, n);
  return out;
}

/// Records the compacted widths in a `model:` section.
void set_compacted(YAML::Node section, const models::ModelOptions& o) {
  if (!o.conv_channels.empty()) {
    YAML::Node widths(YAML::NodeType::Sequence);
    for (auto w : o.conv_channels) widths.push_back(w);
    widths.SetStyle(YAML::EmitterStyle::Flow);
    section["conv_channels"] = widths;
  }
  YAML::Node hidden(YAML::NodeType::Sequence);
  for (auto w : o.hidden) hidden.push_back(w);
  hidden.SetStyle(YAML::EmitterStyle::Flow);
  section["hidden"] = hidden;
}

/// Records a pruned gpt's shape in its `model:` section.
void set_gpt_shape(YAML::Node section, const models::ModelOptions& o) {
  section["dim"] = o.dim;
  section["depth"] = o.depth;
  section["heads"] = o.heads;
  section["mlp_dim"] = o.mlp_dim;
  section["head_dim"] = o.head_dim;
}

std::map<std::string, torch::Tensor> task_state(const trainer::Checkpoint& ckpt) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : ckpt.state)
    if (k.rfind("task.", 0) == 0) out[k.substr(5)] = v;
  return out;
}

int run_scan(const RunConfig& rc, models::Model& model, const prune::Masks& existing) {
  launch::LocalCommunicator local;
  auto train = data::load_dataset(rc.data, "train");
  auto held_out = tail(train, rc.prune.scan_samples);
  std::cerr << "scan: " << rc.prune.method << " on " << held_out.size() << " held-out samples (the last of the train "
            << "split; accuracies there are optimistic if the model trained on them)\n";
  auto evaluate = [&](models::Model& m) {
    return trainer::evaluate(m, held_out, rc.data, torch::kCPU, local, rc.amp).accuracy;
  };
  auto result = prune::scan(model, rc.prune, evaluate, existing);
  std::cout << prune::format_scan(result) << "\n" << prune::suggested_recipe(result);
  return kExitOk;
}

/// What `retort prune` writes.
struct PrunedRun {
  std::shared_ptr<models::Model> model;
  prune::Masks masks;  ///< empty for a compacted gpt
  YAML::Node config;   ///< the composed config, its model section the pruned model's
  std::string summary;
  std::string finetune_recipe;  ///< named in the hint printed at the end
};

/// prune.gpt: the gpt ranked on calibration windows and compacted to the targets; the
/// summary gets the ranking, the config's model section the new shape.
PrunedRun prune_gpt(const RunConfig& rc, models::Model& model, const prune::Masks& existing, YAML::Node config,
                    std::ostringstream& summary) {
  auto* gpt = dynamic_cast<models::Gpt*>(&model);
  if (!gpt)
    throw ConfigError("prune.gpt: prunes a gpt language model, got model.name=" + model.options().name +
                      "; prune it with prune.method=... instead");
  if (!existing.empty())
    throw ConfigError("prune.gpt: the run carries pruning masks (" + std::to_string(existing.size()) +
                      " masked parameters); prune.gpt ranks and shrinks a dense gpt");
  prune::check_gpt_targets(*gpt, rc.prune.gpt);  // before the calibration pass
  if (!rc.data.text())
    throw ConfigError("prune.gpt: calibration needs the run's text data, got data.name=" + rc.data.name);
  // The windows epoch 0 trains on first.
  const auto importance =
      prune::gpt_importance(*gpt, first_training_inputs(rc, rc.prune.gpt.calibration, "prune.gpt.calibration"));
  const auto keep = prune::select_gpt(*gpt, importance, rc.prune.gpt);
  auto c = prune::compact_gpt(*gpt, keep);
  const auto& o = c.options;
  summary << "gpt: dim " << o.dim << ", depth " << o.depth << ", heads " << o.heads << " of width "
          << dynamic_cast<models::Gpt&>(*c.model).head_width() << ", mlp_dim " << o.mlp_dim << "; "
          << prune::format_gpt_selection(importance, keep) << "compacted: " << c.params_before << " -> "
          << c.params_after << " parameters\n";
  set_gpt_shape(config["model"], o);
  return {c.model, {}, config, summary.str(), "recipes/text/lm_prune.yaml"};
}

/// A run directory it can be evaluated and fine-tuned from: config/, a step-0 checkpoint
/// (weights, masks as task state), prune.md.
int write_pruned_run(const RunConfig& rc, const trainer::Checkpoint& source, const std::vector<std::string>& overrides,
                     const PrunedRun& run) {
  DerivedRun derived{run.config, 0, models::weights_of(*run.model), {}, "prune.md", run.summary};
  for (auto& [k, v] : run.masks.state_dict()) derived.state["task." + k] = v;
  const auto path = write_derived_run(rc, source, overrides, derived);
  const std::string run_dir = rc.run.dir;
  std::cout << run.summary << "wrote " << path.string() << "\n"
            << "evaluate: retort eval " << run_dir << "\n"
            << "fine-tune: retort train " << run.finetune_recipe << " prune.from=" << run_dir << "\n";
  return kExitOk;
}

/// prune.method (and prune.compact): masks over the model, compacted when asked.
PrunedRun prune_by_method(const RunConfig& rc, std::shared_ptr<models::Model> model, const prune::Masks& existing,
                          YAML::Node config, std::ostringstream& summary) {
  PrunedRun run{model, prune::compute_masks(*model, rc.prune, existing), config, "",
                "recipes/fmnist/prune_finetune.yaml"};
  run.masks.apply(*model);
  summary << rc.prune.method;
  if (rc.prune.method != "2:4") summary << ", sparsity " << rc.prune.sparsity;
  summary << "\n\n" << prune::format_report(prune::sparsity_report(*model, run.masks), *model, run.masks);
  if (rc.prune.compact) {
    auto c = prune::compact(*model, run.masks);
    summary << "compacted: " << c.params_before << " -> " << c.params_after << " parameters ("
            << std::fixed << std::setprecision(2)
            << static_cast<double>(c.params_after) / static_cast<double>(std::max<int64_t>(1, c.params_before))
            << "x)\n";
    run.model = c.model;
    run.masks = c.masks;
    set_compacted(run.config["model"], c.options);
  }
  run.summary = summary.str();
  return run;
}

int prune(launch::World& world, const PruneArgs& a) {
  const Positionals p = split_positionals(a.positionals, "prune", "checkpoint (a run or checkpoint directory)", 1, 1);
  if (world.size() > 1) throw UsageError("prune runs in one process; launch it without mpirun");

  // --- SOURCE AND CONFIG: every problem reported before anything is written ---------------
  const auto loaded = trainer::load_checkpoint_model(p.inputs.front());
  const trainer::Checkpoint& source = loaded.checkpoint;
  if (loaded.model->quantized())
    throw UsageError("prune: " + source.dir.string() + " is an int8 run (retort quantize); prune the fp32 run it "
                     "was made from, then quantize the result");
  auto composed = compose_derived(source, p.overrides, {{"run.dir", "outputs/prune/${now:%Y-%m-%d}/${now:%H-%M-%S}"}});
  RunConfig rc = read_run_config(composed.config);
  rc.prune.validate();
  trainer::set_threads(rc.trainer.threads);
  const std::shared_ptr<models::Model> model = loaded.model;
  const auto existing = prune::Masks::from_state_dict(task_state(source));
  existing.check(*model, (source.dir / "state.safetensors").string());
  if (a.scan) return run_scan(rc, *model, existing);

  // --- PRUNE (and compact), then WRITE -------------------------------------------------------
  std::ostringstream summary;
  summary << "pruned " << source.dir.string() << " (step " << source.step << "): ";
  const PrunedRun run = rc.prune.gpt.any() ? prune_gpt(rc, *model, existing, composed.config, summary)
                                           : prune_by_method(rc, model, existing, composed.config, summary);
  return write_pruned_run(rc, source, composed.overrides, run);
}

}  // namespace

CommandRun define_prune(CLI::App& app) {
  auto a = std::make_shared<PruneArgs>();
  app.add_option("args", a->positionals,
                 "a run or checkpoint directory, then overrides of its config (prune.method=..., prune.sparsity=..., "
                 "run.dir=...; a gpt: prune.gpt.dim=... depth, heads, mlp_dim)");
  app.add_flag("--scan", a->scan, "print each layer's sensitivity and suggested recipe lines; write nothing");
  return [a](launch::World& world) { return prune(world, *a); };
}

PrunedStart load_pruned_start(const std::string& from) {
  PrunedStart s;
  auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(from));
  if (models::has_int8_layers(ckpt.model))
    throw ConfigError("prune.from: " + ckpt.dir.string() + " is an int8 run (retort quantize); fine-tune the fp32 "
                      "run it was made from, then quantize the result");
  s.checkpoint = ckpt.dir;
  s.model = trainer::checkpoint_model_options(ckpt);
  s.model_section = YAML::Clone(YAML::Load(ckpt.config_yaml)["model"]);
  s.weights = std::move(ckpt.model);
  s.masks = prune::Masks::from_state_dict(task_state(ckpt));
  return s;
}

std::optional<PrunedStart> resolve_prune_from(YAML::Node& config) {
  const YAML::Node from = config["prune"] ? config["prune"]["from"] : YAML::Node();
  if (!from || from.IsNull() || from.as<std::string>().empty()) return std::nullopt;
  PrunedStart s = load_pruned_start(from.as<std::string>());
  config["model"] = YAML::Clone(s.model_section);
  return s;
}

ExportedModel exported_model(const trainer::Checkpoint& ckpt) {
  ExportedModel out{trainer::checkpoint_model(ckpt), std::nullopt};
  const auto masks = prune::Masks::from_state_dict(task_state(ckpt));
  if (masks.empty()) return out;
  masks.check(*out.model, (ckpt.dir / "state.safetensors").string());
  masks.apply(*out.model);
  if (prune::removable_channels(*out.model, masks).empty()) return out;
  auto c = prune::compact(*out.model, masks);
  out.model = c.model;
  out.model->eval();
  YAML::Node section = YAML::Clone(YAML::Load(ckpt.config_yaml)["model"]);
  set_compacted(section, c.options);
  YAML::Emitter emitter;
  emitter << YAML::Flow << section;
  out.compaction = Compaction{c.options, emitter.c_str(), c.params_before, c.params_after};
  return out;
}

}  // namespace retort::cli
