#include "trainer/distill_task.h"

#include "core/error.h"
#include "models/safetensors.h"
#include "trainer/checkpoint_model.h"

namespace retort::trainer {

DistillTask::DistillTask(distill::Distiller distiller, const torch::Tensor& sample) : distiller_(std::move(distiller)) {
  if (distiller_.is_empty()) throw Error("DistillTask: no distiller");
  distiller_->prepare(sample);
}

Losses DistillTask::loss(const torch::Tensor& x, const data::Labels& labels) {
  auto l = distiller_->forward(x, labels);
  return {l.total, std::move(l.terms), l.logits};
}

namespace {

/// A frozen model from a run or checkpoint directory. Errors name `key` and the file.
std::shared_ptr<models::Model> load_checkpoint_teacher(const std::string& path, const std::string& key) {
  try {
    auto teacher = load_checkpoint_model(path).model;
    distill::freeze(*teacher);
    return teacher;
  } catch (const CheckpointError& e) {
    throw CheckpointError(key + ": " + e.what());
  } catch (const ConfigError& e) {
    throw ConfigError(key + ": " + e.what());
  }
}

}  // namespace

std::shared_ptr<models::Model> load_teacher(const distill::DistillOptions& options) {
  options.validate_teacher_source();
  std::shared_ptr<models::Model> teacher;
  if (!options.teacher_weights.empty()) {
    const auto& model = *options.teacher_model;
    const auto file = models::load_safetensors(options.teacher_weights);
    teacher = distill::load_teacher_weights(model, file.tensors, options.teacher_weights);
  } else {
    teacher = load_checkpoint_teacher(options.teacher_checkpoint, "distill.teacher.checkpoint");
  }
  if (options.teacher_ensemble.empty()) return teacher;
  std::vector<std::shared_ptr<models::Model>> members{teacher};
  for (size_t i = 0; i < options.teacher_ensemble.size(); ++i)
    members.push_back(load_checkpoint_teacher(options.teacher_ensemble[i],
                                              "distill.teacher.ensemble[" + std::to_string(i) + "]"));
  return std::make_shared<distill::TeacherEnsemble>(std::move(members), "distill.teacher.ensemble");
}

torch::Tensor sample_batch(const data::Dataset& dataset, int64_t rows, const data::DataOptions& data) {
  if (dataset.size() < 1) throw DataError("distill: the training set is empty; the dry run needs one batch");
  const auto stats = data::pixel_stats(data.name);
  return data::normalize(dataset.images.slice(0, 0, std::min(rows, dataset.size())), stats.mean, stats.stddev);
}

}  // namespace retort::trainer
