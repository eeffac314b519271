#pragma once
/// The trainer's side of distillation: a Task whose model is the student and whose loss is
/// the Distiller's; the projections ride along as an extra module (trained, checkpointed
/// under "extra.distill.*", never exported).
///   auto teacher = trainer::load_teacher(opts);                     // frozen, from the recipe
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
  /// Runs distiller->prepare(sample) (sample: one input batch [B, C, H, W]) so that a
  /// mismatched layer pair fails before any training, and the projections exist before
  /// the trainer builds its optimizer from trainable().
  DistillTask(distill::Distiller distiller, const torch::Tensor& sample);

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
};

/// The frozen teacher a `distill:` section names: distill.teacher.checkpoint (a run or
/// checkpoint directory: weights from model.safetensors, model options from the `model:`
/// section of its config.yaml) or distill.teacher.weights (a safetensors file) with
/// distill.teacher.model; with distill.teacher.ensemble, a distill::TeacherEnsemble of that
/// teacher and each listed run or checkpoint directory. ConfigError / CheckpointError
/// naming the key or file.
std::shared_ptr<models::Model> load_teacher(const distill::DistillOptions& options);

/// One input batch of `dataset` (its first rows, normalized with data.name's statistics, as
/// the loader does): the sample DistillTask's dry run needs.
torch::Tensor sample_batch(const data::Dataset& dataset, int64_t rows = 2, const data::DataOptions& data = {});

}  // namespace retort::trainer
