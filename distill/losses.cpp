#include "distill/losses.h"

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

torch::Tensor ce_loss(const torch::Tensor& student_logits, const torch::Tensor& labels) {
  return amp::cross_entropy(student_logits, labels);
}

torch::Tensor kl_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature) {
  return amp::kl_div_temperature(student_logits, teacher_logits, temperature);
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
