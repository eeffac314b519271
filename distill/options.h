#pragma once
/// What a recipe's `distill:` section says, and the loss weights it resolves to.
///   distill:
///     alpha: 0.7              # loss = alpha * CE + (1 - alpha) * MSE(proj(h_s), h_t)
///     temperature: 4.0        # for the KL term
///     weights: {kl: 0.5}      # explicit weights override what alpha implies, term by term:
///                             # ce, kl, reverse_kl, skew_kl, gjs, dkd, mse, cosine, attention
///     skew_kl: {lambda: 0.1}  # gjs: {beta: 0.5}   (distill/losses.h, Divergence)
///     layers: last            # hidden-state map: last | uniform | [[s, t], ...] | {s_name: t_name}
///     attention_layers: uniform
///     project: true           # learned projections where widths differ
///     spatial: pool           # feature maps of different size: pool the larger | error
///     teacher: {checkpoint: outputs/fmnist-teacher/...}
///     cache: {dir: outputs/lm-cache, top_k: 32, dtype: bf16}   # language models: the
///                             # teacher's outputs stored once (`retort cache-teacher`)
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

/// Weight of each loss term in total = ce*CE + kl*KL + reverse_kl*RKL + skew_kl*SKL +
/// gjs*GJS + dkd*DKD + mse*mean_pairs(MSE) + cosine*mean_pairs(1 - cos) +
/// attention*mean_pairs(attention MSE or KL). A term whose weight is 0 is not computed.
struct LossWeights {
  double ce = 0.7;
  double kl = 0.0;
  double reverse_kl = 0.0;
  double skew_kl = 0.0;
  double gjs = 0.0;
  double dkd = 0.0;
  double mse = 0.3;
  double cosine = 0.0;
  double attention = 0.0;
  /// Whether any term compares the two models' logits (and so needs the same classes).
  bool on_logits() const { return kl > 0 || reverse_kl > 0 || skew_kl > 0 || gjs > 0 || dkd > 0; }
};

struct DistillOptions {
  /// The classic mix: sets ce = alpha and mse = 1 - alpha unless weights.ce / weights.mse
  /// are given.
  double alpha = 0.7;
  /// Explicit term weights (distill.weights.<term>); each one given overrides its default
  /// (ce: alpha, mse: 1 - alpha, every other term: 0).
  std::optional<double> weight_ce, weight_kl, weight_reverse_kl, weight_skew_kl, weight_gjs, weight_dkd, weight_mse,
      weight_cosine, weight_attention;
  /// Softening temperature of the terms on logits (the KLs, GJS, DKD); each is scaled by
  /// T^2 (Hinton et al.).
  double temperature = 4.0;
  /// Skew KL's mix: KL(p || lambda p + (1 - lambda) q), lambda in [0, 1) (DistiLLM's 0.1).
  double skew_lambda = 0.1;
  /// Generalized JSD's beta in [0, 1] (GKD; 0: forward KL, 1: reverse KL).
  double gjs_beta = 0.5;
  /// DKD's weights of its target-class and non-target-class parts (the paper's defaults).
  double dkd_alpha = 1.0;
  double dkd_beta = 8.0;
  /// Hidden-state layer map for the mse and cosine terms: "last" (last to last),
  /// "uniform" (student i -> teacher round((i+1)*Lt/Ls)-1), a list of [student, teacher]
  /// pairs (indices, negative from the end, or hidden names), or a map {student: teacher}.
  LayerMap layers = LayerMap::last();
  /// The same, over the attention maps of Transformer layers (attention term).
  LayerMap attention_layers = LayerMap::uniform();
  /// How attention maps are compared: mse (TinyBERT) or kl of each query's distribution
  /// over the keys (MiniLM).
  enum class AttentionLoss { kMse, kKl };
  AttentionLoss attention_loss = AttentionLoss::kMse;
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
  /// A teacher-output cache (distill/teacher_cache.h): `retort cache-teacher` writes it to
  /// cache.dir; a run with cache.dir trains from it without loading the teacher. top_k: the
  /// ids kept per token, 0 for the whole vocabulary; dtype: how their log-probabilities are
  /// stored.
  std::string cache_dir;
  int64_t cache_top_k = 0;
  enum class CacheDtype { kFp32, kFp16, kBf16 };
  CacheDtype cache_dtype = CacheDtype::kFp32;

  static void declare(config::Fields<DistillOptions>& f);
  /// ConfigError naming the key: alpha outside [0, 1], a negative or non-finite weight,
  /// all weights zero, temperature <= 0, skew_kl.lambda outside [0, 1), gjs.beta outside [0, 1].
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
struct EnumNames<distill::DistillOptions::CacheDtype> {
  static std::vector<std::pair<std::string, distill::DistillOptions::CacheDtype>> list() {
    return {{"fp32", distill::DistillOptions::CacheDtype::kFp32},
            {"fp16", distill::DistillOptions::CacheDtype::kFp16},
            {"bf16", distill::DistillOptions::CacheDtype::kBf16}};
  }
};

template <>
struct EnumNames<distill::DistillOptions::AttentionLoss> {
  static std::vector<std::pair<std::string, distill::DistillOptions::AttentionLoss>> list() {
    return {{"mse", distill::DistillOptions::AttentionLoss::kMse}, {"kl", distill::DistillOptions::AttentionLoss::kKl}};
  }
};

template <>
struct EnumNames<distill::DistillOptions::Spatial> {
  static std::vector<std::pair<std::string, distill::DistillOptions::Spatial>> list() {
    return {{"pool", distill::DistillOptions::Spatial::kPool}, {"error", distill::DistillOptions::Spatial::kError}};
  }
};

}  // namespace retort::config
