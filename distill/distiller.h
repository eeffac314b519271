#pragma once
/// Knowledge distillation: a frozen teacher, the student, and the learned projections that
/// map student widths to teacher widths, combined into one weighted loss.
///
///   auto teacher = distill::load_teacher_weights(teacher_opts, file.tensors, path);  // frozen
///   distill::Distiller distiller(teacher, student, options);   // options: DistillOptions
///   distiller->prepare(sample_x);      // dry run: checks every layer pair, builds projections
///   distill::Losses l = distiller->forward(x, y);   // inside the trainer's autocast region
///   l.total;  // ce*CE + kl*KL + ... + mse*mean(MSE) + cosine*mean(1-cos) + attention*mean(attn)
///   l.terms;  // {"ce", ...}, {"kl", ...}, {"reverse_kl", ...}, {"mse.stage1", ...}, {"attn.2", ...}
///
/// Language models (gpt teacher and student): the terms on logits compare every token's
/// next-token distribution, hidden pairs compare tokens [B, T, D], attention pairs the
/// causal maps; inputs are token ids [B, T] and labels the next tokens [B, T].
///
/// The Distiller's own parameters are the projections only (named after the layer pair:
/// "proj.stage1.weight", "proj.fc0.weight"): they train with the student and go into checkpoints, but
/// the student exported or evaluated alone never contains them. The teacher and the
/// student are held, not registered, so parameters() / train() do not reach the teacher.
///
/// The teacher runs in eval mode under torch::NoGradGuard. Inside an enabled amp::Autocast
/// its weights are cast once to the low dtype (normalization layers and all buffers stay
/// fp32, as amp::MasterWeights keeps them) and it runs under autocast from then on.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "data/loader.h"
#include "distill/layer_map.h"
#include "distill/losses.h"
#include "distill/options.h"
#include "models/model.h"

namespace retort::distill {

struct Losses {
  torch::Tensor total;                                       ///< scalar, what backward runs on
  std::vector<std::pair<std::string, torch::Tensor>> terms;  ///< unweighted terms, by name
  torch::Tensor logits;                                      ///< the student's [B, classes]
};

/// One checked pair of the dry run.
struct MappedPair {
  LayerPair layers;
  std::string student_name, teacher_name;
  std::vector<int64_t> student_shape, teacher_shape;  ///< from the dry run, batch dim included
  std::string projection;  ///< "", "linear" or "conv1x1"
  bool pooled = false;     ///< spatial sizes differ: the larger map is average-pooled
};

class DistillerImpl : public torch::nn::Module {
 public:
  /// `teacher` null: its outputs come from a cache, given to forward(x, labels, cached);
  /// the terms that need the teacher model (dkd, mse, cosine, attention) are refused.
  /// ConfigError when the teacher and student disagree on input (image models:
  /// in_channels, image_size; language models: vocab_size, and the teacher's context must
  /// cover the student's) or, with a term on logits, on num_classes; options are validated
  /// here. With an attention weight both models are asked to keep their attention maps.
  DistillerImpl(std::shared_ptr<models::Model> teacher, std::shared_ptr<models::Model> student,
                DistillOptions options);

  /// Dry forward of both models (eval mode, no gradients) on the first rows of `sample`
  /// (images [B, C, H, W] or token ids [B, T]; values irrelevant): resolves the layer maps, checks every mapped pair
  /// and creates the projections (on the student's device). All mismatches are reported in
  /// one ConfigError naming each pair, both shapes and the fix. Call once, before the
  /// optimizer is built (it must see the projections); a second call checks again and
  /// keeps the projections.
  void prepare(const torch::Tensor& sample);
  bool prepared() const { return prepared_; }

  /// Teacher (frozen) and student forward on x [B, C, H, W] (or token ids [B, T]); the loss
  /// on labels [B] (next tokens [B, T]; a plain label tensor converts). Under mixup the teacher sees the same mixed inputs as
  /// the student (consistent "function matching"), the CE term mixes the two label sets,
  /// and DKD, which needs one true class per row, is refused. Error if prepare() has not run.
  Losses forward(const torch::Tensor& x, const data::Labels& labels);
  /// The student alone against a teacher's stored distributions of x's tokens (a teacher
  /// cache, distill/teacher_cache.h): ce and the divergences, nothing else.
  Losses forward(const torch::Tensor& x, const data::Labels& labels, const TeacherDistribution& cached);

  /// The names of forward()'s terms, in its order (known once prepare() has run).
  std::vector<std::string> term_names() const;

  /// Projections and the student follow `on`; the teacher stays in eval mode.
  void train(bool on = true) override;
  /// Moves the teacher, the student and the projections (dtypes kept).
  void to(torch::Device device, bool non_blocking = false) override;
  using torch::nn::Module::to;

  /// Error when the teacher's outputs come from a cache (no teacher model).
  models::Model& teacher() {
    if (!teacher_) throw Error("Distiller: no teacher model (its outputs come from a cache)");
    return *teacher_;
  }
  models::Model& student() { return *student_; }
  std::shared_ptr<models::Model> teacher_ptr() const { return teacher_; }
  std::shared_ptr<models::Model> student_ptr() const { return student_; }
  const DistillOptions& options() const { return options_; }
  const LossWeights& weights() const { return weights_; }
  const std::vector<MappedPair>& hidden_pairs() const { return hidden_pairs_; }
  const std::vector<MappedPair>& attention_pairs() const { return attention_pairs_; }
  /// The dtype the teacher's weights are in now (kFloat until autocast first runs it).
  torch::ScalarType teacher_dtype() const { return teacher_dtype_; }

 private:
  /// Teacher and student forward in eval mode (the student's mode restored): (teacher, student).
  std::pair<models::Output, models::Output> dry_run(const torch::Tensor& x);
  std::vector<MappedPair> map_hidden_pairs(const models::Output& s_out, const models::Output& t_out,
                                           std::vector<std::string>& problems) const;
  void check_hidden_pair(MappedPair& p, const torch::Tensor& hs, const torch::Tensor& ht, bool same_kind,
                         std::vector<std::string>& problems) const;
  std::vector<MappedPair> map_attention_pairs(const models::Output& s_out, const models::Output& t_out,
                                              std::vector<std::string>& problems) const;
  std::vector<std::shared_ptr<torch::nn::Module>> make_projections(const std::vector<MappedPair>& hidden,
                                                                   const torch::Device& device);
  /// A divergence on logits (distill/losses.h) with its weight; the active ones, in order.
  struct LogitTerm {
    std::string name;
    double weight;
    Divergence kind;
    double param;
  };
  std::vector<LogitTerm> logit_terms() const;
  /// ce, the divergences (from `teacher`) and dkd (from `teacher_logits`) on the logits
  /// ([B, C], or [B, T, V] rows of tokens).
  void add_logit_terms(const torch::Tensor& student_logits, const TeacherDistribution& teacher,
                       const torch::Tensor& teacher_logits, const data::Labels& labels, Losses& out) const;
  models::Output teacher_forward(const torch::Tensor& x);
  void cast_teacher(torch::ScalarType dtype);
  torch::Tensor project(const MappedPair& pair, const torch::Tensor& h);

  std::shared_ptr<models::Model> teacher_;
  std::shared_ptr<models::Model> student_;
  DistillOptions options_;
  LossWeights weights_;
  std::vector<MappedPair> hidden_pairs_, attention_pairs_;
  std::shared_ptr<torch::nn::Module> proj_;                        // "proj": holds the projections
  std::vector<std::shared_ptr<torch::nn::Module>> projections_;  // parallel to hidden_pairs_; null: none
  torch::ScalarType teacher_dtype_ = torch::kFloat;
  bool prepared_ = false;
};
TORCH_MODULE(Distiller);

}  // namespace retort::distill
