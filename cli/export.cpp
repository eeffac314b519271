// `retort export <run_dir or checkpoint> <out>`: the model's weights for PyTorch
// (out.safetensors) or its graph for ONNX Runtime and TensorRT (out.onnx), the format
// from out's extension. Either way the model a checkpoint computes with: masks applied,
// compacted where they remove whole channels.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "cli/prune.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/text.h"
#include "data/data.h"
#include "launch/world.h"
#include "models/models.h"
#include "models/onnx_graph.h"
#include "trainer/checkpoint.h"

namespace retort::cli {
namespace {

namespace fs = std::filesystem;

enum class ExportFormat { kSafetensors, kOnnx };

struct ExportExtension {
  const char* extension;
  ExportFormat format;
};
constexpr ExportExtension kExportExtensions[] = {{".safetensors", ExportFormat::kSafetensors},
                                                 {".onnx", ExportFormat::kOnnx}};

/// The format `out`'s extension names; UsageError naming the file and the extensions known.
ExportFormat export_format(const fs::path& out) {
  std::vector<std::string> known;
  for (const auto& e : kExportExtensions) {
    if (out.extension() == e.extension) return e.format;
    known.push_back(e.extension);
  }
  throw UsageError("export: '" + out.string() + "': unknown extension '" + out.extension().string() +
                   "'; the formats are " + join(known, " and "));
}

fs::path folder_of(const fs::path& out) { return out.has_parent_path() ? out.parent_path() : fs::path("."); }

void write_safetensors(const trainer::Checkpoint& ckpt, const ExportedModel& exported, const fs::path& out) {
  const auto& model = *exported.model;
  const auto& options = model.options();
  // A gpt run exports as a Hugging Face GPT-2 folder: GPT-2's config.json beside the weights,
  // made first so that a model GPT-2 cannot describe is refused before anything is written.
  // Not for int8 weights, which GPT-2's loader would read as numbers of another scale.
  const bool gpt2 = options.name == "gpt" && !model.quantized();
  const std::string gpt2_config = gpt2 ? models::gpt2_config_json(options) : "";
  ensure_writable_dir(folder_of(out));
  // Only the model: distillation projections and optimizer state stay in the checkpoint.
  const auto weights = model.quantized() ? models::int8_tensors(models::weights_of(model), model.int8_layers())
                                         : models::weights_of(model);
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"retort.step", std::to_string(ckpt.step)}};
  if (exported.compaction) meta["retort.model"] = exported.compaction->model_yaml;
  if (model.quantized())
    meta["retort.int8"] = "L.weight int8 = round(w / L.weight_scale), per output channel; static: L.input_* and "
                          "L.output_* quint8 (real = scale * (q - zero_point))";
  models::save_safetensors(out, weights, meta);
  int64_t values = 0;
  for (const auto& kv : weights) values += kv.second.numel();
  std::cout << "wrote " << out.string() << ": " << weights.size() << " tensors, " << values << " values"
            << (model.quantized() ? " (" + std::to_string(model.int8_layers().size()) + " int8 layers)" : "")
            << " (step " << ckpt.step << ")\n";
  if (gpt2) {
    write_file_atomic(folder_of(out) / "config.json", gpt2_config);
    std::cout << "wrote " << (folder_of(out) / "config.json").string() << " (GPT-2 config)\n";
  }
}

void write_onnx(const trainer::Checkpoint& ckpt, const ExportedModel& exported, const fs::path& out) {
  const auto& o = exported.model->options();
  ensure_writable_dir(folder_of(out));
  std::map<std::string, std::string> meta = {{"retort.step", std::to_string(ckpt.step)}};
  if (exported.compaction) meta["retort.model"] = exported.compaction->model_yaml;
  std::string input = "input int64 [batch, tokens <= " + std::to_string(o.context) + "]";
  if (!o.language_model()) {  // what a server must do to pixels before the graph
    const auto stats = data::pixel_stats(checkpoint_run_config(ckpt, {}).data.name);
    meta["retort.input"] = "(pixel / 255 - " + format_number(stats.mean) + ") / " + format_number(stats.stddev);
    input = "input float32 [batch, " + join(std::vector<int64_t>{o.in_channels, o.image_size, o.image_size},
                                             [](int64_t d) { return std::to_string(d); }) +
            "] = " + meta["retort.input"];
  }
  models::save_onnx(out, *exported.model, meta);
  std::cout << "wrote " << out.string() << ": ONNX opset " << models::kOnnxOpset << ", " << input << " -> logits "
            << (o.language_model() ? "[batch, tokens, " + std::to_string(o.vocab_size) + "]"
                                   : "[batch, " + std::to_string(o.num_classes) + "]")
            << " float32, " << models::count_parameters(*exported.model) << " parameters"
            << (exported.model->quantized()
                    ? ", " + std::to_string(exported.model->int8_layers().size()) + " int8 layers in QDQ form"
                    : "")
            << " (step " << ckpt.step << ")\n";
}

struct ExportArgs {
  std::string source;
  std::string out;
};

int export_model(launch::World& world, const ExportArgs& a) {
  const fs::path out = a.out;
  const ExportFormat format = export_format(out);  // before anything is read
  if (world.rank() != 0) return kExitOk;
  const auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(a.source));
  const ExportedModel exported = exported_model(ckpt);
  if (const auto& c = exported.compaction)
    std::cout << "compacted: " << c->params_before << " -> " << c->params_after << " parameters\n";
  if (format == ExportFormat::kOnnx)
    write_onnx(ckpt, exported, out);
  else
    write_safetensors(ckpt, exported, out);
  return kExitOk;
}

}  // namespace

CommandRun define_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  app.add_option("checkpoint", a->source, "a run directory (its newest checkpoint) or a checkpoint directory")
      ->required();
  app.add_option("out", a->out,
                 "the file to write: out.safetensors (weights; a gpt run: config.json beside it) or out.onnx "
                 "(ONNX opset 17 for ONNX Runtime and TensorRT)")
      ->required();
  return [a](launch::World& world) { return export_model(world, *a); };
}

}  // namespace retort::cli
