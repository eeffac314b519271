// models::VisionTransformer ("vit"): shapes, names, PyTorch agreement, autocast, errors.
#include <gtest/gtest.h>

#include "amp/autocast.h"
#include "core/error.h"
#include "models/models.h"
#include "tests/distill/helpers.h"

using namespace retort;

namespace {

models::ModelOptions vit_options(int64_t dim, int64_t depth, int64_t heads, double mlp_ratio, const std::string& pool) {
  models::ModelOptions o;
  o.name = "vit";
  o.image_size = 8;
  o.patch = 4;
  o.dim = dim;
  o.depth = depth;
  o.heads = heads;
  o.mlp_ratio = mlp_ratio;
  o.pool = pool;
  return o;
}

}  // namespace

TEST(Transformer, ShapesOfLogitsHiddenStatesAndAttention) {
  auto o = vit_options(16, 3, 4, 2.0, "cls");
  o.image_size = 28;
  auto m = models::make_model(o);
  auto out = m->forward(torch::randn({5, 1, 28, 28}));
  EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({5, 10}));
  ASSERT_EQ(out.hidden.size(), 3u);
  ASSERT_EQ(out.attention.size(), 3u);
  for (const auto& h : out.hidden) EXPECT_EQ(h.sizes(), torch::IntArrayRef({5, 50, 16}));  // 7x7 patches + cls
  for (const auto& a : out.attention) {
    EXPECT_EQ(a.sizes(), torch::IntArrayRef({5, 4, 50, 50}));
    EXPECT_TRUE(torch::allclose(a.sum(-1), torch::ones({5, 4, 50}), 1e-5, 1e-5));  // rows are distributions
  }
  EXPECT_EQ(m->hidden_names(), (std::vector<std::string>{"layer0", "layer1", "layer2"}));
  EXPECT_EQ(m->hidden_kinds(), (std::vector<std::string>(3, "vector")));

  o.pool = "avg";
  auto avg = models::make_model(o);
  EXPECT_EQ(avg->forward(torch::randn({2, 1, 28, 28})).hidden[0].sizes(), torch::IntArrayRef({2, 49, 16}));
}

TEST(Transformer, ParameterNamesArePyTorchFriendly) {
  auto m = models::make_model(vit_options(16, 2, 2, 2.0, "cls"));
  std::vector<std::string> names;
  for (const auto& kv : models::named_state(*m)) names.push_back(kv.first);
  for (const char* want : {"patch_embed.weight", "patch_embed.bias", "cls_token", "pos_embed", "layers.0.norm1.weight",
                           "layers.0.attn.qkv.weight", "layers.0.attn.proj.bias", "layers.1.norm2.bias",
                           "layers.1.mlp.fc1.weight", "layers.1.mlp.fc2.bias", "norm.weight", "head.weight"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  // Exactly the PyTorch twin's state_dict keys (same set, nothing extra).
  auto twin = test::golden_group("vit.teacher.");
  EXPECT_EQ(names.size(), twin.size());
  // Parameter count: embed (1*16*4*4+16) + cls 16 + pos 5*16 + 2 layers + norm 32 + head 170.
  const int64_t layer = 2 * 32 + (16 * 48 + 48) + (16 * 16 + 16) + (16 * 32 + 32) + (32 * 16 + 16);
  EXPECT_EQ(models::count_parameters(*m), 272 + 16 + 80 + 2 * layer + 32 + 170);
}

TEST(Transformer, ForwardMatchesThePyTorchTwin) {
  auto m = models::make_model(vit_options(16, 2, 2, 2.0, "cls"));
  models::load_weights(*m, test::golden_group("vit.teacher."), "golden vit.teacher");
  m->eval();
  auto out = m->forward(test::golden("vit.x"));
  EXPECT_TRUE(torch::allclose(out.logits, test::golden("vit.teacher_logits"), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(out.attention[1], test::golden("vit.teacher_attention1"), 1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(out.hidden[0], test::golden("vit.teacher_hidden0"), 1e-4, 1e-5));
}

TEST(Transformer, RunsUnderBf16AutocastAndTrains) {
  torch::manual_seed(3);
  auto m = models::make_model(vit_options(16, 2, 2, 2.0, "avg"));
  auto x = torch::randn({4, 1, 8, 8});
  auto y = torch::tensor({1, 2, 3, 4}, torch::kInt64);
  torch::Tensor fp32_logits = m->forward(x).logits.detach();
  models::Output out;
  {
    amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
    out = m->forward(x);
  }
  EXPECT_EQ(out.logits.scalar_type(), torch::kBFloat16);  // the head is a low-precision matmul
  EXPECT_EQ(out.attention[0].scalar_type(), torch::kFloat);  // softmax runs in fp32
  EXPECT_EQ(out.hidden[0].scalar_type(), torch::kFloat);     // residual stream stays fp32
  EXPECT_TRUE(torch::allclose(out.logits.to(torch::kFloat), fp32_logits, 0.05, 0.05));
  auto loss = torch::nn::functional::cross_entropy(out.logits.to(torch::kFloat), y);
  loss.backward();
  for (const auto& kv : m->named_parameters()) {
    ASSERT_TRUE(kv.value().grad().defined()) << kv.key();
    EXPECT_EQ(kv.value().grad().scalar_type(), torch::kFloat) << kv.key();
  }
}

TEST(Transformer, BadOptionsNameTheKey) {
  using test::expect_error;
  auto o = vit_options(16, 2, 3, 2.0, "cls");
  expect_error<ConfigError>([&] { models::make_model(o); }, {"model.heads: 3 does not divide model.dim 16"});
  o = vit_options(16, 2, 2, 2.0, "cls");
  o.patch = 3;
  expect_error<ConfigError>([&] { models::make_model(o); }, {"model.patch: 3 does not divide model.image_size 8"});
  o = vit_options(16, 2, 2, 2.0, "flatten");
  expect_error<ConfigError>([&] { models::make_model(o); }, {"model.pool", "cls", "avg", "'flatten'"});
  o = vit_options(16, 2, 2, 0.01, "cls");
  expect_error<ConfigError>([&] { models::make_model(o); }, {"model.mlp_ratio", "narrower than 1"});
  // A cnn does not accept the vit pooling.
  models::ModelOptions cnn;
  cnn.pool = "cls";
  expect_error<ConfigError>([&] { models::make_model(cnn); }, {"model.pool", "flatten or avg", "'cls'"});
}
