// `retort quantize <run_dir or checkpoint> quant.method=dynamic|static [overrides...]`: the
// run's model (masks applied, compacted) with int8 linear and convolution layers, written
// as a new run directory that eval, report and export take like any other.
#include <CLI/CLI.hpp>

#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/derived_run.h"
#include "cli/prune.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/text.h"
#include "launch/world.h"
#include "models/models.h"
#include "quant/quantize.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"

namespace retort::cli {
namespace {

const char* op_name(amp::LayerOp op) {
  switch (op) {
    case amp::LayerOp::kLinear:
      return "linear";
    case amp::LayerOp::kConv1D:
      return "conv1d (GPT-2)";
    case amp::LayerOp::kConv2d:
      return "conv2d";
  }
  return "?";
}

int64_t bytes_of(const std::map<std::string, torch::Tensor>& tensors) {
  int64_t n = 0;
  for (const auto& [name, t] : tensors) n += t.numel() * static_cast<int64_t>(t.element_size());
  return n;
}

/// quantize.md: how, each layer, what stayed fp32 and why, the tensors' bytes.
std::string summary(const RunConfig& rc, const trainer::Checkpoint& source, const quant::Quantized& q,
                    const std::string& engine, int64_t calibrated, int64_t fp32_bytes, int64_t int8_bytes) {
  const auto& o = rc.quant;
  std::ostringstream s;
  s << "quantized " << source.dir.string() << " (step " << source.step << "): " << config::enum_name(o.method);
  if (o.method == quant::Method::kStatic) {
    s << ", " << config::enum_name(o.calibration);
    if (o.calibration == quant::Calibration::kPercentile) s << " " << format_number(o.percentile) << " %";
    s << " on " << calibrated << " training samples";
  }
  s << "; int8 kernels: LibTorch's quantized ops on " << engine
    << "\n\n| layer | op | weight | activations |\n|---|---|---|---|\n";
  for (const auto& l : q.layers) {
    if (l.lookup) {
      s << "| " << l.name << " | embedding (looked up) | int8 " << c10::str(l.values.sizes())
        << " per row, stored; the model computes with the rows dequantized | fp32 |\n";
      continue;
    }
    s << "| " << l.name << " | " << op_name(l.op) << " | int8 " << c10::str(l.values.sizes())
      << " per output channel | " << (l.input ? "uint8, ranged on calibration" : "uint8, ranged per call") << " |\n";
  }
  for (const auto& k : q.kept) s << "| " << k.name << " | | fp32: " << k.why << " | fp32 |\n";
  s << "\nAlso fp32: normalisation layers, embedding lookups, attention's products of activations (no weights).\n"
    << "model tensors: " << fp32_bytes << " bytes in fp32, " << int8_bytes << " bytes quantized (" << std::fixed
    << std::setprecision(3) << static_cast<double>(int8_bytes) / static_cast<double>(std::max<int64_t>(1, fp32_bytes))
    << "x)\n";
  return s.str();
}

int quantize(launch::World& world, const Args& positionals) {
  const Positionals p = split_positionals(positionals, "quantize", "checkpoint (a run or checkpoint directory)", 1, 1);
  if (world.size() > 1) throw UsageError("quantize runs in one process; launch it without mpirun");

  // --- SOURCE AND CONFIG: every problem reported before anything is written ---------------
  const auto source = trainer::Checkpointer::load(trainer::Checkpointer::resolve(p.inputs.front()));
  if (models::has_int8_layers(source.model))
    throw UsageError("quantize: " + source.dir.string() +
                     " holds an int8 model already; quantize the fp32 run it was made from");
  // amp off: the ops int8 leaves (norms, attention) in fp32, as the exported graph has them.
  auto composed = compose_derived(
      source, p.overrides, {{"run.dir", "outputs/quantize/${now:%Y-%m-%d}/${now:%H-%M-%S}"}, {"amp.mode", "off"}});
  const RunConfig rc = read_run_config(composed.config);
  trainer::set_threads(rc.trainer.threads);
  const ExportedModel exported = exported_model(source);  // masks applied, compacted
  auto& model = *exported.model;
  const bool calibrate = rc.quant.method == quant::Method::kStatic;
  const int64_t samples = calibrate ? rc.quant.batches * rc.data.batch_size : 0;
  const auto batches = calibrate ? first_training_inputs(rc, samples, "quant.batches") : std::vector<torch::Tensor>{};

  // --- QUANTIZE, then WRITE -------------------------------------------------------------------
  auto q = quant::quantize(model, rc.quant, batches);
  const auto fp32 = models::weights_of(model);
  const std::string engine = quant::attach(model, q.layers);
  const auto tensors = models::int8_tensors(fp32, model.int8_layers());
  if (exported.compaction) composed.config["model"] = YAML::Load(exported.compaction->model_yaml);
  int64_t calibrated = 0;
  for (const auto& b : batches) calibrated += b.size(0);
  const std::string text = summary(rc, source, q, engine, calibrated, bytes_of(fp32), bytes_of(tensors));
  const auto path = write_derived_run(rc, source, composed.overrides,
                                      {composed.config, source.step, tensors, {}, "quantize.md", text});
  const std::string run_dir = rc.run.dir;
  std::cout << text << "wrote " << path.string() << "\n"
            << "evaluate: retort eval " << run_dir << "\n"
            << "serve: retort export " << run_dir << " model.onnx\n";
  return kExitOk;
}

}  // namespace

CommandRun define_quantize(CLI::App& app) {
  auto positionals = std::make_shared<Args>();
  app.add_option("args", *positionals,
                 "a run or checkpoint directory, then overrides of its config (quant.method=dynamic|static, "
                 "quant.calibration=minmax|percentile|entropy, quant.batches=N, quant.skip=[head], run.dir=...)");
  return [positionals](launch::World& world) { return quantize(world, *positionals); };
}

}  // namespace retort::cli
