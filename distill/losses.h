#pragma once
/// The distillation loss terms, each on top of the amp-aware ops (fp32 inside autocast):
///   auto ce  = distill::ce_loss(student_logits, labels);
///   auto kl  = distill::kl_loss(student_logits, teacher_logits, /*temperature=*/4.0);  // x T^2
///   auto t   = distill::teacher_distribution(teacher_logits, 1.0);  // or a cache's top-K
///   auto rkl = distill::divergence(distill::Divergence::kReverseKl, student_logits, t, 1.0);
///   auto dkd = distill::dkd_loss(student_logits, teacher_logits, labels, 4.0, 1.0, 8.0);
///   auto mse = distill::hidden_mse(h_s, h_t);        // after projection / pooling
///   auto cos = distill::hidden_cosine(h_s, h_t);     // mean over rows of 1 - cos
///   auto att = distill::attention_mse(a_s, a_t);     // [B, H, T, T] maps
/// Every term is a batch mean, so it does not grow with the batch size.
#include <torch/torch.h>

#include <utility>

namespace retort::distill {

/// Cross-entropy of logits [..., C] on class indices [...] (a language model's [B, T, V] on
/// next tokens [B, T]), mean over rows, with label smoothing eps in [0, 1).
torch::Tensor ce_loss(const torch::Tensor& student_logits, const torch::Tensor& labels, double label_smoothing = 0.0);

/// A teacher's softened distribution over the classes (next tokens) of each row, as the
/// divergences take it: log-probabilities `logp` [N, V] over the whole vocabulary, or
/// [N, K] over the token ids `ids` [N, K] (a cache's top-K), the remaining mass
/// 1 - sum exp(logp) then forming one bucket "the rest" on both sides. fp32.
struct TeacherDistribution {
  torch::Tensor logp;
  torch::Tensor ids;  ///< undefined: logp covers the whole vocabulary in id order
  bool whole() const { return !ids.defined(); }
  TeacherDistribution to(const torch::Device& device) const {
    return {logp.to(device), ids.defined() ? ids.to(device) : ids};
  }
};

/// log_softmax(logits / T) in fp32, rows flattened: [..., V] -> [N, V].
TeacherDistribution teacher_distribution(const torch::Tensor& teacher_logits, double temperature);

/// The divergences of a student from its teacher on distributions softened by T, summed
/// over the classes (or the kept ids and the rest), mean over rows, x T^2 (Hinton et al.: the
/// gradients keep their size whatever T). p is the teacher's, q the student's:
///   kForwardKl  KL(p || q)                      (classic KD; mode-covering)
///   kReverseKl  KL(q || p)                      (MiniLLM's objective, here on the data; mode-seeking)
///   kSkewKl     KL(p || lambda p + (1 - lambda) q)   (DistiLLM's skew KL; lambda in [0, 1))
///   kGjs        beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q (GKD's
///               generalized JSD; beta in [0, 1], 0 is forward KL and 1 reverse KL)
/// `param` is lambda or beta (ignored by the KLs). Computed in fp32 under any autocast.
enum class Divergence { kForwardKl, kReverseKl, kSkewKl, kGjs };
torch::Tensor divergence(Divergence kind, const torch::Tensor& student_logits, const TeacherDistribution& teacher,
                         double temperature, double param = 0.0);

/// KL(softmax(t / T) || softmax(s / T)) * T^2, summed over classes, mean over rows: the
/// forward divergence of the whole teacher distribution.
torch::Tensor kl_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature);

/// Decoupled knowledge distillation (Zhao et al., CVPR 2022), x T^2, mean over rows:
/// alpha * TCKD + beta * NCKD, where TCKD is the KL between teacher and student of the
/// binary split (the label's class vs all others) and NCKD the KL of the distributions over
/// the other classes alone. Classic KL is TCKD + (1 - p_teacher(label)) * NCKD per row, so
/// NCKD, the "dark knowledge" among wrong classes, is weighted down exactly where the
/// teacher is confident; DKD weighs it by beta instead. Logits [..., C] (C >= 2), labels of
/// their shape without C (a language model's [B, T, V] and next tokens [B, T]).
torch::Tensor dkd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                       const torch::Tensor& labels, double temperature, double alpha, double beta);

/// Mean squared error over every element; shapes must be equal.
torch::Tensor hidden_mse(const torch::Tensor& student, const torch::Tensor& teacher);

/// mean over samples of 1 - cos(student_i, teacher_i), each sample flattened; for tokens
/// [B, T, D] each token is a row (the representation is compared token by token).
torch::Tensor hidden_cosine(const torch::Tensor& student, const torch::Tensor& teacher);

/// MSE between attention maps [B, Hs, T, T] and [B, Ht, T, T]. Equal head counts are
/// matched head by head (TinyBERT); different counts compare the head-averaged maps.
/// Token counts must be equal.
torch::Tensor attention_mse(const torch::Tensor& student, const torch::Tensor& teacher);

/// MiniLM's attention transfer: KL(teacher row || student row) of each query's attention
/// distribution, summed over keys, mean over [B, heads, queries]; 0 log 0 = 0 (the causal
/// mask's zeros). Heads matched as attention_mse matches them.
torch::Tensor attention_kl(const torch::Tensor& student, const torch::Tensor& teacher);

/// Feature maps [B, C, H, W] of different height / width: each side of the larger map is
/// adaptive-average-pooled to the smaller's. Returns the pair (student, teacher).
std::pair<torch::Tensor, torch::Tensor> match_spatial(const torch::Tensor& student, const torch::Tensor& teacher);

}  // namespace retort::distill
