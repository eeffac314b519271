#pragma once
/// What a recipe's `distill:` section says, and the loss weights it resolves to.
///   distill:
///     alpha: 0.7              # loss = alpha * CE + (1 - alpha) * MSE(proj(h_s), h_t)
///     temperature: 4.0        # for the KL term
///     weights: {kl: 0.5}      # explicit weights override what alpha implies, term by term
///     layers: last            # hidden-state map: last | uniform | [[s, t], ...] | {s_name: t_name}
///     attention_layers: uniform
///     project: true           # learned projections where widths differ
///     spatial: pool           # feature maps of different size: pool the larger | error
///     teacher: {checkpoint: outputs/fmnist-teacher/...}
///
///   auto opts = reader.section<distill::DistillOptions>("distill");
///   opts.validate();                      // ConfigError naming the key
///   distill::LossWeights w = opts.loss_weights();
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "distill/layer_map.h"
#include "models/model.h"

namespace retort::distill {

/// Weight of each loss term in total = ce*CE + kl*KL + dkd*DKD + mse*mean_pairs(MSE) +
/// cosine*mean_pairs(1 - cos) + attention*mean_pairs(attention MSE). A term whose weight
/// is 0 is not computed.
struct LossWeights {
  double ce = 0.7;
  double kl = 0.0;
  double dkd = 0.0;
  double mse = 0.3;
  double cosine = 0.0;
  double attention = 0.0;
};

struct DistillOptions {
  /// The classic mix: sets ce = alpha and mse = 1 - alpha unless weights.ce / weights.mse
  /// are given.
  double alpha = 0.7;
  /// Explicit term weights (distill.weights.<term>); each one given overrides its default
  /// (ce: alpha, mse: 1 - alpha, kl / dkd / cosine / attention: 0).
  std::optional<double> weight_ce, weight_kl, weight_dkd, weight_mse, weight_cosine, weight_attention;
  /// Softening temperature of the KL and DKD terms; both are scaled by T^2 (Hinton et al.).
  double temperature = 4.0;
  /// DKD's weights of its target-class and non-target-class parts (the paper's defaults).
  double dkd_alpha = 1.0;
  double dkd_beta = 8.0;
  /// Hidden-state layer map for the mse and cosine terms: "last" (last to last),
  /// "uniform" (student i -> teacher round((i+1)*Lt/Ls)-1), a list of [student, teacher]
  /// pairs (indices, negative from the end, or hidden names), or a map {student: teacher}.
  LayerMap layers = LayerMap::last();
  /// The same, over the attention maps of Transformer layers (attention term).
  LayerMap attention_layers = LayerMap::uniform();
  /// Add a learned projection (linear for vectors, 1x1 convolution for feature maps) from
  /// the student's width to the teacher's where they differ; false: a width mismatch is an
  /// error.
  bool project = true;
  /// Feature maps of different height/width: pool adaptive-average-pools the larger to
  /// the smaller (per side); error refuses.
  enum class Spatial { kPool, kError };
  Spatial spatial = Spatial::kPool;
  /// Where the teacher comes from (read by the CLI): a run or checkpoint directory, or a
  /// safetensors file plus the teacher's model options (same keys as `model:`).
  std::string teacher_checkpoint;
  std::string teacher_weights;
  std::optional<models::ModelOptions> teacher_model;
  /// More teachers (run or checkpoint directories) averaged with the first into one
  /// (distill::TeacherEnsemble): their mean logits feed the kl and dkd terms; the hidden
  /// states and attention maps stay the first teacher's.
  std::vector<std::string> teacher_ensemble;

  static void declare(config::Fields<DistillOptions>& f);
  /// ConfigError naming the key: alpha outside [0, 1], a negative or non-finite weight,
  /// all weights zero, temperature <= 0.
  void validate() const;
  /// ConfigError unless exactly one of teacher.checkpoint / teacher.weights is set, and
  /// teacher.model accompanies teacher.weights.
  void validate_teacher_source() const;
  /// The weights after alpha and explicit weights are combined.
  LossWeights loss_weights() const;
};

}  // namespace retort::distill

namespace retort::config {

template <>
struct EnumNames<distill::DistillOptions::Spatial> {
  static std::vector<std::pair<std::string, distill::DistillOptions::Spatial>> list() {
    return {{"pool", distill::DistillOptions::Spatial::kPool}, {"error", distill::DistillOptions::Spatial::kError}};
  }
};

}  // namespace retort::config
