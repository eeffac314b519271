#include "distill/losses.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "amp/ops.h"
#include "core/error.h"

namespace retort::distill {
namespace {

std::string shape(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

}  // namespace

torch::Tensor ce_loss(const torch::Tensor& student_logits, const torch::Tensor& labels, double label_smoothing) {
  return amp::cross_entropy(student_logits, labels, label_smoothing);
}

torch::Tensor kl_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature) {
  return amp::kl_div_temperature(student_logits, teacher_logits, temperature);
}

torch::Tensor dkd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                       const torch::Tensor& labels, double temperature, double alpha, double beta) {
  if (!(temperature > 0.0) || !std::isfinite(temperature))
    throw Error("distill::dkd_loss: temperature must be a positive finite number, got " + std::to_string(temperature));
  if (student_logits.dim() != 2 || student_logits.sizes() != teacher_logits.sizes() || student_logits.size(1) < 2 ||
      labels.dim() != 1 || labels.size(0) != student_logits.size(0) || student_logits.size(0) == 0)
    throw Error("distill::dkd_loss: expected student and teacher logits [B, C] (B >= 1, C >= 2) and labels [B], got " +
                shape(student_logits) + ", " + shape(teacher_logits) + " and " + shape(labels));
  // In fp32, as every loss under the amp policy (amp/policy.h).
  const auto s = student_logits.to(torch::kFloat32) / temperature;
  const auto t = teacher_logits.to(torch::kFloat32) / temperature;
  const auto target = torch::zeros_like(s, s.options().dtype(torch::kBool)).scatter_(1, labels.unsqueeze(1), true);
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
  if (student.dim() != 4 || teacher.dim() != 4 || student.size(0) != teacher.size(0) ||
      student.size(2) != teacher.size(2) || student.size(3) != teacher.size(3))
    throw Error("distill::attention_mse: attention maps " + shape(student) + " and " + shape(teacher) +
                " must be [B, heads, T, T] with equal B and T");
  if (student.size(1) == teacher.size(1)) return amp::mse_loss(student, teacher);
  return amp::mse_loss(student.mean(1), teacher.mean(1));
}

std::pair<torch::Tensor, torch::Tensor> match_spatial(const torch::Tensor& student, const torch::Tensor& teacher) {
  if (student.dim() != 4 || teacher.dim() != 4)
    throw Error("distill::match_spatial: expected feature maps [B, C, H, W], got " + shape(student) + " and " +
                shape(teacher));
  const int64_t h = std::min(student.size(2), teacher.size(2)), w = std::min(student.size(3), teacher.size(3));
  auto pool = [&](const torch::Tensor& x) {
    return x.size(2) == h && x.size(3) == w ? x : torch::adaptive_avg_pool2d(x, {h, w});
  };
  return {pool(student), pool(teacher)};
}

}  // namespace retort::distill
