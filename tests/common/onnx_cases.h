#pragma once
// Every family's ONNX export case (include as "tests/common/onnx_cases.h"): a
// small configuration of each, with random weights and inputs of a few shapes,
// for the fp32 and the int8 (QDQ) export tests.
#include <torch/torch.h>

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/models.h"
#include "tests/common/gpt.h"

namespace retort::test {

using models::Model;
using models::ModelOptions;
using nlohmann::json;

/// One family's configuration, small, and the input the graph declares for it.
struct ExportCase {
  std::string label;
  ModelOptions options;
  json input_dims;
};

inline void PrintTo(const ExportCase& c, std::ostream* out) { *out << c.label; }

inline ModelOptions image_model(const std::string& family, int64_t in_channels, int64_t image_size, int64_t classes) {
  ModelOptions o;
  o.name = family;
  o.in_channels = in_channels;
  o.image_size = image_size;
  o.num_classes = classes;
  return o;
}

inline std::vector<ExportCase> export_cases() {
  std::vector<ExportCase> cases;
  auto cnn = image_model("cnn", 1, 12, 10);
  cnn.channels = {4, 6};
  cnn.hidden = {12};
  cases.push_back({"cnn", cnn, json::array({"batch", 1, 12, 12})});
  auto cnn_avg = image_model("cnn", 3, 8, 5);  // no batch norm (convs with bias), global average pool
  cnn_avg.channels = {5};
  cnn_avg.convs_per_stage = 1;
  cnn_avg.batch_norm = false;
  cnn_avg.pool = "avg";
  cnn_avg.hidden = {7, 6};
  cases.push_back({"cnn_avg_no_bn", cnn_avg, json::array({"batch", 3, 8, 8})});
  auto mlp = image_model("mlp", 2, 6, 4);
  mlp.hidden = {16, 8};
  cases.push_back({"mlp", mlp, json::array({"batch", 2, 6, 6})});
  auto vit = image_model("vit", 1, 8, 10);
  vit.patch = 4;
  vit.dim = 16;
  vit.depth = 2;
  vit.heads = 4;
  vit.pool = "cls";
  cases.push_back({"vit_cls", vit, json::array({"batch", 1, 8, 8})});
  auto vit_avg = vit;
  vit_avg.in_channels = 3;
  vit_avg.pool = "avg";
  vit_avg.mlp_ratio = 1.5;
  cases.push_back({"vit_avg", vit_avg, json::array({"batch", 3, 8, 8})});
  cases.push_back({"gpt", test::gpt_options(), json::array({"batch", "tokens"})});
  // A compacted gpt's shape: heads * head_dim (15) is not dim (24).
  auto pruned_gpt = test::gpt_options(61, 16, 24, 2, 3, 40);
  pruned_gpt.head_dim = 5;
  cases.push_back({"gpt_head_dim", pruned_gpt, json::array({"batch", "tokens"})});
  return cases;
}

/// The model of `options` with every weight drawn from `seed`: norms' scales
/// and shifts and batch norm's running statistics too, so that none of them is
/// the identity.
inline std::shared_ptr<Model> random_model(const ModelOptions& options, uint64_t seed) {
  torch::manual_seed(seed);
  auto model = make_model(options);
  model->eval();
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) p.value().add_(torch::randn_like(p.value()) * 0.1);
  for (auto& b : model->named_buffers()) {
    if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0, 0.3);
    if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 1.5);
  }
  return model;
}

/// Inputs of a few shapes: images of batch 1 and 5; token ids of (batch,
/// tokens) (1, 1), (3, 7) and (2, context).
inline std::vector<torch::Tensor> inputs_for(const ModelOptions& o) {
  if (o.language_model())
    return {torch::randint(o.vocab_size, {1, 1}, torch::kLong), torch::randint(o.vocab_size, {3, 7}, torch::kLong),
            torch::randint(o.vocab_size, {2, o.context}, torch::kLong)};
  return {torch::randn({1, o.in_channels, o.image_size, o.image_size}),
          torch::randn({5, o.in_channels, o.image_size, o.image_size})};
}

}  // namespace retort::test
