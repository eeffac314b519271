#include "distill/teacher.h"

#include <vector>

#include "core/error.h"
#include "models/weights.h"

namespace retort::distill {

void freeze(models::Model& model) {
  for (auto& p : model.parameters()) p.set_requires_grad(false);
  model.eval();
}

std::shared_ptr<models::Model> load_teacher_weights(const models::ModelOptions& options,
                                                    const std::map<std::string, torch::Tensor>& weights,
                                                    const std::string& origin) {
  auto model = models::make_model(options);
  models::load_weights(*model, weights, origin);
  freeze(*model);
  return model;
}

namespace {
const models::ModelOptions& first_options(const std::vector<std::shared_ptr<models::Model>>& members,
                                          const std::string& key) {
  if (members.empty() || !members.front()) throw ConfigError(key + ": an ensemble needs at least one teacher");
  return members.front()->options();
}
}  // namespace

TeacherEnsemble::TeacherEnsemble(std::vector<std::shared_ptr<models::Model>> members, const std::string& key)
    : models::Model(first_options(members, key)), members_(std::move(members)) {
  const auto& first = options_;
  for (size_t i = 0; i < members_.size(); ++i) {
    if (!members_[i]) throw ConfigError(key + ": teacher " + std::to_string(i) + " is missing");
    const auto& o = members_[i]->options();
    auto differs = [&](const char* what, int64_t a, int64_t b) {
      if (a != b)
        throw ConfigError(key + ": teacher " + std::to_string(i) + " (" + o.name + ") has " + what + " " +
                          std::to_string(b) + " but the first teacher (" + first.name + ") has " + std::to_string(a) +
                          "; an ensemble's teachers must read the same input and predict the same classes");
    };
    if (first.language_model() != o.language_model())
      throw ConfigError(key + ": teacher " + std::to_string(i) + " (" + o.name + ") and the first teacher (" +
                        first.name + ") are not both language models; an ensemble's teachers must read the same input");
    if (first.language_model()) {
      differs("vocab_size", first.vocab_size, o.vocab_size);
      differs("context", first.context, o.context);
    } else {
      differs("num_classes", first.num_classes, o.num_classes);
      differs("in_channels", first.in_channels, o.in_channels);
      differs("image_size", first.image_size, o.image_size);
    }
    freeze(*members_[i]);
    register_module("member" + std::to_string(i), members_[i]);
  }
  eval();  // frozen as a whole, like each member
}

void TeacherEnsemble::set_keep_attention(bool keep) {
  models::Model::set_keep_attention(keep);
  members_.front()->set_keep_attention(keep);
}

models::Output TeacherEnsemble::forward(const torch::Tensor& x) {
  models::Output out = members_.front()->forward(x);
  if (members_.size() == 1) return out;
  // Summed in fp32 whatever the members ran in, then cast back to the first's dtype.
  auto sum = out.logits.to(torch::kFloat32);
  for (size_t i = 1; i < members_.size(); ++i) sum = sum + members_[i]->forward(x).logits.to(torch::kFloat32);
  out.logits = (sum / static_cast<double>(members_.size())).to(out.logits.scalar_type());
  return out;
}

}  // namespace retort::distill
