#include "cli/derived_run.h"

#include "core/error.h"
#include "core/fs.h"
#include "data/data.h"
#include "models/safetensors.h"

namespace retort::cli {
namespace {

std::string yaml_list(const std::vector<std::string>& items) {
  YAML::Node n(YAML::NodeType::Sequence);
  for (const auto& s : items) n.push_back(s);
  return config::emit(n);
}

}  // namespace

config::Composed compose_derived(const trainer::Checkpoint& source, const std::vector<std::string>& overrides,
                                 const std::map<std::string, std::string>& defaults) {
  YAML::Node tree = YAML::Load(source.config_yaml);
  if (!tree.IsMap()) throw CheckpointError(source.dir.string() + "/config.yaml: expected a YAML map");
  for (const auto& [key, value] : defaults) {
    const size_t dot = key.find('.');
    tree[key.substr(0, dot)][key.substr(dot + 1)] = value;
  }
  auto composed = compose_stored(config::emit(tree), source.dir / "config.yaml", overrides);
  composed.overrides = overrides;
  return composed;
}

std::filesystem::path write_derived_run(const RunConfig& rc, const trainer::Checkpoint& source,
                                        const std::vector<std::string>& overrides, const DerivedRun& run) {
  const std::filesystem::path run_dir = rc.run.dir;
  try {
    ensure_writable_dir(run_dir / "config");
  } catch (const Error& e) {
    throw Error(std::string("run.dir: ") + e.what());
  }
  const std::string config_text = config::emit(run.config);
  write_file_atomic(run_dir / "config" / "recipe.yaml", source.config_yaml);
  write_file_atomic(run_dir / "config" / "overrides.yaml", yaml_list(overrides));
  write_file_atomic(run_dir / "config" / "config.yaml", config_text);
  trainer::Checkpoint ckpt;
  ckpt.step = run.step;
  ckpt.config_yaml = config_text;
  ckpt.model = run.model;
  ckpt.state = run.state;
  const auto path = trainer::Checkpointer(run_dir / "checkpoints", rc.trainer.keep_last).save(ckpt);
  write_file_atomic(run_dir / run.summary_file, run.summary);
  return path;
}

std::vector<torch::Tensor> first_training_inputs(const RunConfig& rc, int64_t samples, const std::string& key) {
  const auto train = data::load_dataset(rc.data, "train", window_shape(rc));
  const int64_t n = std::min(samples, train.size());
  if (n <= 0) throw DataError(key + ": the training split of data." + rc.data.name + " has no samples to calibrate on");
  const auto stats = train.text ? data::PixelStats{} : data::pixel_stats(rc.data.name);
  std::vector<torch::Tensor> batches;
  for (int64_t start = 0; start < n; start += rc.data.batch_size) {
    const int64_t end = std::min(n, start + rc.data.batch_size);
    if (train.text) {
      std::vector<int64_t> indices;
      for (int64_t i = start; i < end; ++i) indices.push_back(i);
      batches.push_back(train.text->batch(indices, /*epoch=*/0).first);
    } else {
      batches.push_back(data::normalize(train.images.slice(0, start, end), stats.mean, stats.stddev));
    }
  }
  return batches;
}

}  // namespace retort::cli
