#pragma once
/// The trainer's side of distillation: a Task whose model is the student and whose loss is
/// the Distiller's; the projections ride along as an extra module (trained, checkpointed
/// under "extra.distill.*", never exported).
///   auto teacher = trainer::load_teacher(opts, data_opts);          // frozen, from the recipe
///   distill::Distiller d(teacher, student, opts);
///   auto task = std::make_shared<trainer::DistillTask>(d, sample_x); // dry run happens here
///   setup.task = task;  trainer::Trainer(std::move(setup)).fit();
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/data.h"
#include "distill/distill.h"
#include "trainer/task.h"

namespace retort::trainer {

class DistillTask : public Task {
 public:
  /// Runs distiller->prepare(sample) (sample: one input batch [B, C, H, W] or token ids
  /// [B, T]) so that a mismatched layer pair fails before any training, and the
  /// projections exist before the trainer builds its optimizer from trainable(). With a
  /// `cache` (and a distiller without a teacher), each batch's teacher distributions are
  /// read from it by the batch's block indices (data::Labels::index).
  DistillTask(distill::Distiller distiller, const torch::Tensor& sample,
              std::shared_ptr<const distill::TeacherCache> cache = nullptr);

  models::Model& model() override { return distiller_->student(); }
  Losses loss(const torch::Tensor& x, const data::Labels& labels) override;
  std::vector<std::string> loss_terms() const override { return distiller_->term_names(); }
  std::vector<std::pair<std::string, torch::nn::Module*>> extra_modules() override {
    return {{"distill", distiller_.get()}};
  }
  /// Student and projections follow `on`; the teacher stays in eval mode.
  void train(bool on) override { distiller_->train(on); }
  /// Moves the teacher too.
  void to(const torch::Device& device) override { distiller_->to(device); }

  distill::Distiller& distiller() { return distiller_; }

 private:
  distill::Distiller distiller_;
  std::shared_ptr<const distill::TeacherCache> cache_;
};

/// What a teacher cache for this run must have been made from: the teacher's weights file
/// (distill.teacher.weights, or model.safetensors of distill.teacher.checkpoint's newest
/// checkpoint) and the training token file, hashed; the student's context and vocabulary;
/// distill.temperature. ConfigError for a teacher ensemble (a cache holds one teacher).
distill::TeacherCacheKey teacher_cache_key(const distill::DistillOptions& options, const data::TextWindows& windows,
                                           const models::ModelOptions& student);

/// The frozen teacher a `distill:` section names: distill.teacher.checkpoint (a run or
/// checkpoint directory: weights from model.safetensors, model options from the `model:`
/// section of its config.yaml) or distill.teacher.weights (a safetensors file) with
/// distill.teacher.model; with distill.teacher.ensemble, a distill::TeacherEnsemble of that
/// teacher and each listed run or checkpoint directory. ConfigError / CheckpointError
/// naming the key or file; ConfigError when a checkpoint teacher read text through another
/// tokenizer than `data` names.
std::shared_ptr<models::Model> load_teacher(const distill::DistillOptions& options, const data::DataOptions& data = {});

/// One input batch of `dataset` (its first rows, normalized with data.name's statistics, as
/// the loader does; for text, the first token windows): the sample DistillTask's dry run needs.
torch::Tensor sample_batch(const data::Dataset& dataset, int64_t rows = 2, const data::DataOptions& data = {});

}  // namespace retort::trainer
