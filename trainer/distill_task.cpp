#include "trainer/distill_task.h"

#include <numeric>

#include "config/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "models/safetensors.h"
#include "trainer/checkpoint_model.h"

namespace retort::trainer {

DistillTask::DistillTask(distill::Distiller distiller, const torch::Tensor& sample,
                         std::shared_ptr<const distill::TeacherCache> cache)
    : distiller_(std::move(distiller)), cache_(std::move(cache)) {
  if (distiller_.is_empty()) throw Error("DistillTask: no distiller");
  distiller_->prepare(sample);
}

Losses DistillTask::loss(const torch::Tensor& x, const data::Labels& labels) {
  if (cache_ && !labels.index.defined())
    throw Error("DistillTask: a teacher cache needs the batch's block indices (data::Batch::index)");
  auto l = cache_ ? distiller_->forward(x, labels, cache_->distribution(labels.index).to(x.device()))
                  : distiller_->forward(x, labels);
  return {l.total, std::move(l.terms), l.logits};
}

distill::TeacherCacheKey teacher_cache_key(const distill::DistillOptions& options, const data::TextWindows& windows,
                                           const models::ModelOptions& student) {
  options.validate_teacher_source();
  if (!options.teacher_ensemble.empty())
    throw ConfigError("distill.cache.dir: a teacher cache holds one teacher's outputs; it cannot stand for "
                      "distill.teacher.ensemble");
  distill::TeacherCacheKey key;
  const fs::path weights = options.teacher_weights.empty()
                               ? Checkpointer::resolve(options.teacher_checkpoint) / "model.safetensors"
                               : fs::path(options.teacher_weights);
  key.teacher = hex64(xxh64_file(weights));
  key.teacher_origin = weights.string();
  key.corpus = hex64(xxh64_file(windows.tokens().path()));
  key.corpus_origin = windows.tokens().path().string();
  key.context = student.context;
  key.vocab_size = student.vocab_size;
  key.temperature = options.temperature;
  return key;
}

namespace {

/// The `data:` section a checkpoint's run trained on (its defaults where the config is silent).
data::DataOptions checkpoint_data_options(const Checkpoint& ckpt) {
  config::Reader reader(config::parse(ckpt.config_yaml, (ckpt.dir / "config.yaml").string()));
  return reader.section<data::DataOptions>("data");
}

/// A frozen model from a run or checkpoint directory; a language model's token files must
/// come from the run's tokenizer. Errors name `key` and the file.
std::shared_ptr<models::Model> load_checkpoint_teacher(const std::string& path, const std::string& key,
                                                       const data::DataOptions& data) {
  try {
    auto loaded = load_checkpoint_model(path);
    const auto teacher_data = checkpoint_data_options(loaded.checkpoint);
    const auto& tokenizer = teacher_data.tokenizer.name;
    if (data.text() && teacher_data.text() && tokenizer != data.tokenizer.name)
      throw ConfigError("the teacher " + path + " was trained on tokens of the '" + tokenizer +
                        "' tokenizer, this run reads '" + data.tokenizer.name +
                        "' tokens (data.tokenizer.name); teacher and student must read the same tokens");
    distill::freeze(*loaded.model);
    return loaded.model;
  } catch (const CheckpointError& e) {
    throw CheckpointError(key + ": " + e.what());
  } catch (const ConfigError& e) {
    throw ConfigError(key + ": " + e.what());
  }
}

}  // namespace

std::shared_ptr<models::Model> load_teacher(const distill::DistillOptions& options, const data::DataOptions& data) {
  options.validate_teacher_source();
  std::shared_ptr<models::Model> teacher;
  if (!options.teacher_weights.empty()) {
    const auto& model = *options.teacher_model;
    const auto file = models::load_safetensors(options.teacher_weights);
    teacher = distill::load_teacher_weights(model, file.tensors, options.teacher_weights);
  } else {
    teacher = load_checkpoint_teacher(options.teacher_checkpoint, "distill.teacher.checkpoint", data);
  }
  if (options.teacher_ensemble.empty()) return teacher;
  std::vector<std::shared_ptr<models::Model>> members{teacher};
  for (size_t i = 0; i < options.teacher_ensemble.size(); ++i)
    members.push_back(load_checkpoint_teacher(options.teacher_ensemble[i],
                                              "distill.teacher.ensemble[" + std::to_string(i) + "]", data));
  return std::make_shared<distill::TeacherEnsemble>(std::move(members), "distill.teacher.ensemble");
}

torch::Tensor sample_batch(const data::Dataset& dataset, int64_t rows, const data::DataOptions& data) {
  if (dataset.size() < 1) throw DataError("distill: the training set is empty; the dry run needs one batch");
  if (dataset.text) {
    std::vector<int64_t> first(static_cast<size_t>(std::min(rows, dataset.size())));
    std::iota(first.begin(), first.end(), 0);
    return dataset.text->batch(first, 0).first;
  }
  const auto stats = data::pixel_stats(data.name);
  return data::normalize(dataset.images.slice(0, 0, std::min(rows, dataset.size())), stats.mean, stats.stddev);
}

}  // namespace retort::trainer
