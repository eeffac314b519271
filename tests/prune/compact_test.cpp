// Compaction: the smaller dense model computes what the masked model computes.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tests/prune/helpers.h"

using namespace retort;
using namespace retort::prune;
using test::expect_error;

namespace {

PruneOptions structured(double sparsity, const std::string& method = "l1_structured") {
  PruneOptions o;
  o.method = method;
  o.sparsity = sparsity;
  return o;
}

/// Masked model and compacted model agree on the logits (eval and train mode) and on the
/// hidden states once the removed channels are dropped from the masked model's.
void expect_same_outputs(models::Model& masked, models::Model& compacted) {
  torch::manual_seed(11);
  auto x = torch::randn({5, 1, 28, 28});
  torch::NoGradGuard g;
  masked.eval();
  compacted.eval();
  auto a = masked.forward(x), b = compacted.forward(x);
  EXPECT_LT((a.logits - b.logits).abs().max().item<double>(), 1e-5);
  EXPECT_GT(a.logits.abs().max().item<double>(), 1e-3);  // not trivially zero
  // Training mode: batch statistics of the kept channels are the same too.
  masked.train();
  compacted.train();
  auto c = masked.forward(x), d = compacted.forward(x);
  EXPECT_LT((c.logits - d.logits).abs().max().item<double>(), 1e-4);
}

}  // namespace

TEST(Compact, CnnWithBatchNormAndFlattenEqualsTheMaskedModel) {
  auto model = test::random_model(test::small_cnn(), 21);
  auto masks = compute_masks(*model, structured(0.4));
  masks.apply(*model);
  auto c = compact(*model, masks);
  // 4 -> 4 - floor(1.6) = 3, 8 -> 8 - 3 = 5; fc0 6 -> 6 - 2 = 4.
  EXPECT_EQ(c.options.conv_channels, (std::vector<int64_t>{3, 3, 5, 5}));
  EXPECT_EQ(c.options.hidden, (std::vector<int64_t>{4}));
  EXPECT_TRUE(c.masks.empty());  // purely structured: nothing left to mask
  EXPECT_LT(c.params_after, c.params_before);
  EXPECT_EQ(c.params_after, models::count_parameters(*c.model));
  EXPECT_EQ(c.model->named_parameters()["fc0.weight"].size(1), 5 * 7 * 7);
  expect_same_outputs(*model, *c.model);
  // Loadable like any other model: the options rebuild it, the weights fit.
  auto rebuilt = models::make_model(c.options);
  models::load_weights(*rebuilt, models::weights_of(*c.model), "test");
  // And trainable: one step changes the weights and the loss is finite.
  torch::optim::SGD sgd(c.model->parameters(), 0.1);
  c.model->train();
  auto out = c.model->forward(torch::randn({4, 1, 28, 28}));
  auto loss = torch::nn::functional::cross_entropy(out.logits, torch::tensor({0, 1, 2, 3}));
  loss.backward();
  sgd.step();
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
}

TEST(Compact, AvgPoolWithoutBatchNormAndMlp) {
  auto model = test::random_model(test::small_cnn(false, "avg"), 22);
  auto masks = compute_masks(*model, structured(0.5, "l2_structured"));
  masks.apply(*model);
  auto c = compact(*model, masks);
  EXPECT_EQ(c.options.conv_channels, (std::vector<int64_t>{2, 2, 4, 4}));
  expect_same_outputs(*model, *c.model);

  models::ModelOptions o;
  o.name = "mlp";
  o.hidden = {12, 10};
  auto mlp = test::random_model(o, 23);
  PruneOptions po = structured(0.5);
  po.layers = YAML::Load("{fc1: 0.0}");
  auto mm = compute_masks(*mlp, po);
  mm.apply(*mlp);
  auto cm = compact(*mlp, mm);
  EXPECT_EQ(cm.options.hidden, (std::vector<int64_t>{6, 10}));
  expect_same_outputs(*mlp, *cm.model);
}

TEST(Compact, UnstructuredLeftoversStayMaskedInTheSmallerShapes) {
  auto model = test::random_model(test::small_cnn(), 24);
  auto masks = compute_masks(*model, structured(0.5));
  masks.apply(*model);
  PruneOptions more;
  more.method = "magnitude";
  more.sparsity = 0.9;  // of the weights, counting those already gone
  auto both = compute_masks(*model, more, masks);
  both.apply(*model);
  auto c = compact(*model, both);
  ASSERT_FALSE(c.masks.empty());
  const auto& m = c.masks.at("fc0.weight");
  EXPECT_EQ(m.sizes(), c.model->named_parameters()["fc0.weight"].sizes());
  EXPECT_TRUE(c.model->named_parameters()["fc0.weight"].masked_select(m.logical_not()).eq(0).all().item<bool>());
  expect_same_outputs(*model, *c.model);
}

TEST(Compact, NothingToCompact) {
  auto model = test::random_model(test::small_cnn(), 25);
  PruneOptions po;
  po.method = "magnitude";
  po.sparsity = 0.5;
  auto masks = compute_masks(*model, po);
  EXPECT_TRUE(removable_channels(*model, masks).empty());
  expect_error<ConfigError>([&] { compact(*model, masks); }, {"nothing to compact", "l1_structured"});
}

TEST(Compact, PerConvolutionWidthsAreChecked) {
  auto o = test::small_cnn();
  o.conv_channels = {3, 3, 5};
  expect_error<ConfigError>([&] { models::make_model(o); },
                            {"model.conv_channels: expected 4 widths (2 stages x 2 convs_per_stage), got 3"});
  o.conv_channels = {3, 0, 5, 5};
  expect_error<ConfigError>([&] { models::make_model(o); }, {"model.conv_channels", "positive", "got 0"});
  o.conv_channels = {3, 2, 5, 4};
  auto m = models::make_model(o);
  auto p = m->named_parameters();
  EXPECT_EQ(p["stage0.conv1.weight"].sizes(), (std::vector<int64_t>{2, 3, 3, 3}));
  EXPECT_EQ(p["stage0.bn1.weight"].size(0), 2);
  EXPECT_EQ(p["fc0.weight"].size(1), 4 * 7 * 7);
}
