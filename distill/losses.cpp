#include "distill/losses.h"

#include <cmath>
#include <limits>

#include "amp/ops.h"
#include "core/error.h"

namespace retort::distill {
namespace {

void check_temperature(const char* where, double temperature) {
  if (!(temperature > 0.0) || !std::isfinite(temperature))
    throw Error(std::string("distill::") + where + ": temperature must be a positive finite number, got " +
                std::to_string(temperature));
}

/// KL of the rows of two log-probability tensors: sum over the last dim of exp(a) (a - b).
torch::Tensor kl_rows(const torch::Tensor& log_a, const torch::Tensor& log_b) {
  return (log_a.exp() * (log_a - log_b)).sum(-1);
}

/// log(w exp(a) + (1 - w) exp(b)): the mixture of two distributions, in log space.
torch::Tensor log_mixture(const torch::Tensor& log_a, double w, const torch::Tensor& log_b) {
  return torch::logsumexp(torch::stack({log_a + std::log(w), log_b + std::log1p(-w)}), 0);
}

/// Teacher and student log-probabilities on the teacher's support, [N, V] or, for a top-K
/// teacher, [N, K + 1]: the kept ids, then the rest of the vocabulary as one bucket.
std::pair<torch::Tensor, torch::Tensor> on_support(const torch::Tensor& student_logits, const TeacherDistribution& t,
                                                   double temperature) {
  const int64_t vocab = student_logits.size(-1);
  const auto q = torch::log_softmax(student_logits.to(torch::kFloat32).reshape({-1, vocab}) / temperature, 1);
  const bool rows_agree = t.logp.dim() == 2 && t.logp.size(0) == q.size(0);
  if (t.whole()) {
    if (!rows_agree || t.logp.size(1) != vocab)
      throw Error("distill::divergence: student logits " + c10::str(student_logits.sizes()) +
                  " and teacher log-probabilities " + c10::str(t.logp.sizes()) +
                  " must be [..., V] and [N, V] with the same rows");
    return {t.logp, q};
  }
  if (!rows_agree || t.ids.sizes() != t.logp.sizes() || t.logp.size(1) > vocab)
    throw Error("distill::divergence: a top-K teacher needs log-probabilities and ids [N, K] (K <= " +
                std::to_string(vocab) + ") for the student's " + std::to_string(q.size(0)) + " rows, got " +
                c10::str(t.logp.sizes()) + " and " + c10::str(t.ids.sizes()));
  const auto kept = q.gather(1, t.ids);
  if (t.ids.size(1) == vocab) return {t.logp, kept};  // every id kept: no rest
  // The rest's mass, clamped: rounding can leave 1 - sum slightly below 0.
  const auto rest_p = (1.0 - t.logp.exp().sum(1, true)).clamp_min(1e-30).log();
  const auto rest_q = q.scatter(1, t.ids, -std::numeric_limits<float>::infinity()).logsumexp(1, true);
  return {torch::cat({t.logp, rest_p}, 1), torch::cat({kept, rest_q}, 1)};
}

void check_weight_param(const char* what, double v, bool one_allowed) {
  if (!std::isfinite(v) || v < 0 || v > 1 || (!one_allowed && v == 1))
    throw Error(std::string("distill::divergence: ") + what + " must be in [0, 1" + (one_allowed ? "]" : ")") +
                ", got " + std::to_string(v));
}

void check_attention_maps(const char* where, const torch::Tensor& student, const torch::Tensor& teacher) {
  if (student.dim() != 4 || teacher.dim() != 4 || student.size(0) != teacher.size(0) ||
      student.size(2) != teacher.size(2) || student.size(3) != teacher.size(3))
    throw Error(std::string("distill::") + where + ": attention maps " + c10::str(student.sizes()) + " and " +
                c10::str(teacher.sizes()) + " must be [B, heads, T, T] with equal B and T");
}

}  // namespace

TeacherDistribution teacher_distribution(const torch::Tensor& teacher_logits, double temperature) {
  check_temperature("teacher_distribution", temperature);
  if (teacher_logits.dim() < 1 || teacher_logits.numel() == 0)
    throw Error("distill::teacher_distribution: logits " + c10::str(teacher_logits.sizes()) + " are empty");
  const int64_t vocab = teacher_logits.size(-1);
  return {torch::log_softmax(teacher_logits.to(torch::kFloat32).reshape({-1, vocab}) / temperature, 1), {}};
}

torch::Tensor divergence(Divergence kind, const torch::Tensor& student_logits, const TeacherDistribution& teacher,
                         double temperature, double param) {
  check_temperature("divergence", temperature);
  if (student_logits.dim() < 1 || student_logits.numel() == 0)
    throw Error("distill::divergence: student logits " + c10::str(student_logits.sizes()) + " are empty");
  const auto [p, q] = on_support(student_logits, teacher, temperature);
  torch::Tensor rows;
  switch (kind) {
    case Divergence::kForwardKl:
      rows = kl_rows(p, q);
      break;
    case Divergence::kReverseKl:
      rows = kl_rows(q, p);
      break;
    case Divergence::kSkewKl:
      check_weight_param("skew KL's lambda", param, /*one_allowed=*/false);
      rows = kl_rows(p, log_mixture(p, param, q));
      break;
    case Divergence::kGjs: {
      check_weight_param("generalized JSD's beta", param, /*one_allowed=*/true);
      // The ends are the two KLs themselves (GKD), not the mixture's limits (which vanish).
      if (param == 0.0) {
        rows = kl_rows(p, q);
      } else if (param == 1.0) {
        rows = kl_rows(q, p);
      } else {
        const auto m = log_mixture(p, param, q);
        rows = param * kl_rows(p, m) + (1.0 - param) * kl_rows(q, m);
      }
      break;
    }
  }
  return rows.mean() * (temperature * temperature);
}

torch::Tensor ce_loss(const torch::Tensor& student_logits, const torch::Tensor& labels, double label_smoothing) {
  return amp::cross_entropy(student_logits, labels, label_smoothing);
}

torch::Tensor kl_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature) {
  if (student_logits.sizes() != teacher_logits.sizes())
    throw Error("distill::kl_loss: student logits " + c10::str(student_logits.sizes()) + " and teacher logits " +
                c10::str(teacher_logits.sizes()) + " differ in shape");
  return divergence(Divergence::kForwardKl, student_logits, teacher_distribution(teacher_logits, temperature),
                    temperature);
}

torch::Tensor dkd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                       const torch::Tensor& labels, double temperature, double alpha, double beta) {
  check_temperature("dkd_loss", temperature);
  if (student_logits.dim() < 2 || student_logits.sizes() != teacher_logits.sizes() || student_logits.size(-1) < 2 ||
      labels.sizes() != student_logits.sizes().slice(0, student_logits.dim() - 1) || student_logits.numel() == 0)
    throw Error(
        "distill::dkd_loss: expected student and teacher logits [..., C] (C >= 2, at least one row) and "
        "labels of their shape without C, got " +
        c10::str(student_logits.sizes()) + ", " + c10::str(teacher_logits.sizes()) + " and " +
        c10::str(labels.sizes()));
  // In fp32, as every loss under the amp policy (amp/policy.h); rows are every position of
  // the leading dims ([B, C] -> B, a language model's [B, T, V] -> B * T).
  const int64_t classes = student_logits.size(-1);
  const auto s = student_logits.to(torch::kFloat32).reshape({-1, classes}) / temperature;
  const auto t = teacher_logits.to(torch::kFloat32).reshape({-1, classes}) / temperature;
  const auto target =
      torch::zeros_like(s, s.options().dtype(torch::kBool)).scatter_(1, labels.reshape({-1, 1}), true);
  const double inf = std::numeric_limits<double>::infinity();
  // log p(label) and log (1 - p(label)), both from log_softmax: no 1 - p cancellation.
  const auto binary = [&](const torch::Tensor& z) {
    const auto ls = torch::log_softmax(z, 1);
    return torch::stack({ls.masked_fill(~target, -inf).logsumexp(1), ls.masked_fill(target, -inf).logsumexp(1)}, 1);
  };
  const auto bt = binary(t), bs = binary(s);
  const auto tckd = (bt.exp() * (bt - bs)).sum(1).mean();
  // The other classes alone: the label's logit pushed to a large finite negative (not -inf,
  // so that its p log p term is 0 * finite = 0).
  const auto nt = torch::log_softmax(t.masked_fill(target, -1e9), 1);
  const auto ns = torch::log_softmax(s.masked_fill(target, -1e9), 1);
  const auto nckd = (nt.exp() * (nt - ns)).sum(1).mean();
  return (alpha * tckd + beta * nckd) * (temperature * temperature);
}

torch::Tensor hidden_mse(const torch::Tensor& student, const torch::Tensor& teacher) {
  return amp::mse_loss(student, teacher);
}

torch::Tensor hidden_cosine(const torch::Tensor& student, const torch::Tensor& teacher) {
  if (student.dim() == 3 && teacher.dim() == 3)  // [B, T, D]: one row per token
    return amp::cosine_loss(student.flatten(0, 1), teacher.flatten(0, 1));
  return amp::cosine_loss(student, teacher);
}

torch::Tensor attention_mse(const torch::Tensor& student, const torch::Tensor& teacher) {
  check_attention_maps("attention_mse", student, teacher);
  if (student.size(1) == teacher.size(1)) return amp::mse_loss(student, teacher);
  return amp::mse_loss(student.mean(1), teacher.mean(1));
}

torch::Tensor attention_kl(const torch::Tensor& student, const torch::Tensor& teacher) {
  check_attention_maps("attention_kl", student, teacher);
  auto s = student.to(torch::kFloat32), t = teacher.to(torch::kFloat32);
  if (s.size(1) != t.size(1)) {
    s = s.mean(1, /*keepdim=*/true);
    t = t.mean(1, /*keepdim=*/true);
  }
  // xlogy: the masked keys (0 in both maps) add 0, not 0 * log 0.
  return (torch::xlogy(t, t) - torch::xlogy(t, s.clamp_min(1e-12))).sum(-1).mean();
}

std::pair<torch::Tensor, torch::Tensor> match_spatial(const torch::Tensor& student, const torch::Tensor& teacher) {
  if (student.dim() != 4 || teacher.dim() != 4)
    throw Error("distill::match_spatial: expected feature maps [B, C, H, W], got " + c10::str(student.sizes()) +
                " and " + c10::str(teacher.sizes()));
  const int64_t h = std::min(student.size(2), teacher.size(2)), w = std::min(student.size(3), teacher.size(3));
  auto pool = [&](const torch::Tensor& x) {
    return x.size(2) == h && x.size(3) == w ? x : torch::adaptive_avg_pool2d(x, {h, w});
  };
  return {pool(student), pool(teacher)};
}

}  // namespace retort::distill
