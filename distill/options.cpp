#include "distill/options.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/text.h"

namespace retort::distill {
namespace {

void check_weight(const std::optional<double>& w, const char* term) {
  if (w && (!std::isfinite(*w) || *w < 0))
    throw ConfigError(std::string("distill.weights.") + term + ": expected a finite weight >= 0, got " + format_number(*w));
}

}  // namespace

void DistillOptions::declare(config::Fields<DistillOptions>& f) {
  f.add("alpha", &DistillOptions::alpha, "loss = alpha * CE + (1 - alpha) * hidden MSE (unless weights.ce / weights.mse are set)")
      .min(0)
      .max(1);
  f.add("weights.ce", &DistillOptions::weight_ce, "weight of cross-entropy on labels (default: alpha)").min(0);
  f.add("weights.kl", &DistillOptions::weight_kl, "weight of KL on temperature-softened logits, x T^2 (default 0)").min(0);
  f.add("weights.reverse_kl", &DistillOptions::weight_reverse_kl,
        "weight of reverse KL(student || teacher) on softened logits, x T^2 (MiniLLM's objective; default 0)")
      .min(0);
  f.add("weights.skew_kl", &DistillOptions::weight_skew_kl,
        "weight of skew KL(teacher || lambda teacher + (1 - lambda) student), x T^2 (DistiLLM; default 0)")
      .min(0);
  f.add("weights.gjs", &DistillOptions::weight_gjs,
        "weight of the generalized Jensen-Shannon divergence with gjs.beta, x T^2 (GKD; default 0)")
      .min(0);
  f.add("skew_kl.lambda", &DistillOptions::skew_lambda, "skew KL: the teacher's share of the mixture, in [0, 1)")
      .min(0);
  f.add("gjs.beta", &DistillOptions::gjs_beta, "generalized JSD: beta in [0, 1] (0: forward KL, 1: reverse KL)")
      .min(0)
      .max(1);
  f.add("weights.dkd", &DistillOptions::weight_dkd,
        "weight of decoupled KD (dkd.alpha * TCKD + dkd.beta * NCKD, x T^2; default 0)")
      .min(0);
  f.add("dkd.alpha", &DistillOptions::dkd_alpha, "DKD: weight of the target-class part (TCKD)").min(0);
  f.add("dkd.beta", &DistillOptions::dkd_beta, "DKD: weight of the non-target-class part (NCKD)").min(0);
  f.add("weights.mse", &DistillOptions::weight_mse, "weight of hidden-state MSE (default: 1 - alpha)").min(0);
  f.add("weights.cosine", &DistillOptions::weight_cosine, "weight of hidden-state 1 - cosine (default 0)").min(0);
  f.add("weights.attention", &DistillOptions::weight_attention,
        "weight of the attention-map term (attention_loss), Transformers (default 0)")
      .min(0);
  f.add("attention_loss", &DistillOptions::attention_loss,
        "attention maps compared by mse (TinyBERT) or kl of each query's distribution (MiniLM)");
  f.add("temperature", &DistillOptions::temperature, "softening temperature of the terms on logits (KLs, GJS, DKD)")
      .greater_than(0);
  f.add("layers", &DistillOptions::layers,
        "hidden-state map: last, uniform, [[student, teacher], ...] (indices or names) or {student: teacher}");
  f.add("attention_layers", &DistillOptions::attention_layers, "attention-map map, same forms as distill.layers");
  f.add("project", &DistillOptions::project, "learned projection (linear / 1x1 conv) where widths differ");
  f.add("spatial", &DistillOptions::spatial, "feature maps of different size: pool the larger to the smaller, or error");
  f.add("teacher.checkpoint", &DistillOptions::teacher_checkpoint, "teacher: a run directory or checkpoint directory");
  f.add("teacher.weights", &DistillOptions::teacher_weights, "teacher: a .safetensors file (needs distill.teacher.model)");
  f.add("teacher.model", &DistillOptions::teacher_model, "teacher's model options with teacher.weights (keys of model:)");
  f.add("cache.dir", &DistillOptions::cache_dir,
        "teacher-output cache: `retort cache-teacher` writes it here; set, a run trains from it (language models)");
  f.add("cache.top_k", &DistillOptions::cache_top_k, "cache: ids kept per token (0: the whole vocabulary)").min(0);
  f.add("cache.dtype", &DistillOptions::cache_dtype, "cache: storage of the log-probabilities (fp32, fp16, bf16)");
  f.add("teacher.ensemble", &DistillOptions::teacher_ensemble,
        "more teachers (run or checkpoint dirs): logits averaged with the teacher's; hidden states the teacher's");
}

void DistillOptions::validate() const {
  if (!(alpha >= 0 && alpha <= 1)) throw ConfigError("distill.alpha: expected a value in [0, 1], got " + format_number(alpha));
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw ConfigError("distill.temperature: expected a finite value > 0, got " + format_number(temperature));
  check_weight(weight_ce, "ce");
  check_weight(weight_kl, "kl");
  check_weight(weight_reverse_kl, "reverse_kl");
  check_weight(weight_skew_kl, "skew_kl");
  check_weight(weight_gjs, "gjs");
  if (!(skew_lambda >= 0 && skew_lambda < 1))
    throw ConfigError("distill.skew_kl.lambda: expected a value in [0, 1), got " + format_number(skew_lambda));
  if (!(gjs_beta >= 0 && gjs_beta <= 1))
    throw ConfigError("distill.gjs.beta: expected a value in [0, 1], got " + format_number(gjs_beta));
  check_weight(weight_dkd, "dkd");
  for (const auto& [v, key] : {std::pair<double, const char*>{dkd_alpha, "distill.dkd.alpha"}, {dkd_beta, "distill.dkd.beta"}})
    if (!std::isfinite(v) || v < 0) throw ConfigError(std::string(key) + ": expected a finite value >= 0, got " + format_number(v));
  check_weight(weight_mse, "mse");
  check_weight(weight_cosine, "cosine");
  check_weight(weight_attention, "attention");
  const auto w = loss_weights();
  if (w.ce == 0 && !w.on_logits() && w.mse == 0 && w.cosine == 0 && w.attention == 0)
    throw ConfigError("distill.weights: every loss weight is 0 (ce, kl, reverse_kl, skew_kl, gjs, dkd, mse, cosine, "
                      "attention); give at least one a positive weight");
}

void DistillOptions::validate_teacher_source() const {
  const bool ckpt = !teacher_checkpoint.empty(), weights = !teacher_weights.empty();
  const bool model = teacher_model.has_value();
  if (ckpt == weights)
    throw ConfigError(std::string("distill.teacher: ") + (ckpt ? "both checkpoint and weights are set" : "no teacher given") +
                      "; set exactly one of distill.teacher.checkpoint=<run or checkpoint dir> or "
                      "distill.teacher.weights=<file.safetensors> (with distill.teacher.model)");
  if (weights && !model)
    throw ConfigError("distill.teacher.model: required with distill.teacher.weights='" + teacher_weights +
                      "' (a safetensors file has no model config); give the teacher's model keys, e.g. "
                      "distill.teacher.model={name: cnn, channels: [32, 64]}");
  for (size_t i = 0; i < teacher_ensemble.size(); ++i)
    if (teacher_ensemble[i].empty())
      throw ConfigError("distill.teacher.ensemble[" + std::to_string(i) +
                        "]: empty path; give each extra teacher's run or checkpoint directory");
  if (ckpt && model)
    throw ConfigError("distill.teacher.model: only used with distill.teacher.weights; the checkpoint '" +
                      teacher_checkpoint + "' carries its own model config");
}

LossWeights DistillOptions::loss_weights() const {
  LossWeights w;
  w.ce = weight_ce.value_or(alpha);
  w.mse = weight_mse.value_or(1.0 - alpha);
  w.kl = weight_kl.value_or(0.0);
  w.reverse_kl = weight_reverse_kl.value_or(0.0);
  w.skew_kl = weight_skew_kl.value_or(0.0);
  w.gjs = weight_gjs.value_or(0.0);
  w.dkd = weight_dkd.value_or(0.0);
  w.cosine = weight_cosine.value_or(0.0);
  w.attention = weight_attention.value_or(0.0);
  return w;
}

}  // namespace retort::distill
