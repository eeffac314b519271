// Mask arithmetic of every method, structured dependencies between layers, and the
// ConfigError texts for bad pruning options.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tests/prune/helpers.h"

using namespace retort;
using namespace retort::prune;
using test::expect_error;

namespace {

PruneOptions options(const std::string& method, double sparsity) {
  PruneOptions o;
  o.method = method;
  o.sparsity = sparsity;
  return o;
}

torch::Tensor param(const models::Model& m, const std::string& name) { return m.named_parameters()[name].detach(); }

/// [out] true where the mask keeps something of the output channel's row.
torch::Tensor rows_kept(const torch::Tensor& mask) { return mask.flatten(1).any(1); }

}  // namespace

TEST(PruneCount, FloorOfTheFractionKeepingOne) {
  EXPECT_EQ(prune_count(0.4, 10), 4);
  EXPECT_EQ(prune_count(0.29, 100), 29);  // 0.29 * 100 = 28.999999999999996
  EXPECT_EQ(prune_count(0.45, 10), 4);
  EXPECT_EQ(prune_count(0.0, 10), 0);
  EXPECT_EQ(prune_count(0.99, 10), 9);
  EXPECT_EQ(prune_count(0.99, 1), 0);  // a layer keeps at least one
}

TEST(Magnitude, ExactSparsityAndSmallestFirst) {
  torch::manual_seed(0);
  auto w = torch::randn({10, 20});
  auto m = magnitude_mask(w, 0.4);
  EXPECT_EQ(m.dtype(), torch::kBool);
  EXPECT_EQ(m.sizes(), w.sizes());
  EXPECT_EQ(m.logical_not().sum().item<int64_t>(), 80);
  const double largest_pruned = w.abs().masked_select(m.logical_not()).max().item<double>();
  const double smallest_kept = w.abs().masked_select(m).min().item<double>();
  EXPECT_LE(largest_pruned, smallest_kept);
}

TEST(Magnitude, TiesGoToTheLowerIndexFirst) {
  auto w = torch::ones({2, 4});
  w[1][3] = 0.5;
  auto m = magnitude_mask(w, 0.5);  // prunes 4: the 0.5, then the first three of the equal ones
  auto expected = torch::tensor({false, false, false, true, true, true, true, false}).view({2, 4});
  EXPECT_TRUE(torch::equal(m, expected)) << m;
  EXPECT_TRUE(torch::equal(m, magnitude_mask(w, 0.5)));
}

TEST(Magnitude, GlobalThresholdAcrossLayers) {
  auto a = torch::tensor({0.1, 0.2, 5.0, 6.0});
  auto b = torch::tensor({0.3, -7.0, 8.0, 9.0});
  auto masks = global_magnitude_masks({a, b}, 0.5);
  ASSERT_EQ(masks.size(), 2u);
  EXPECT_TRUE(torch::equal(masks[0], torch::tensor({false, false, false, true})));
  EXPECT_TRUE(torch::equal(masks[1], torch::tensor({false, true, true, true})));
}

TEST(Structured, L1AndL2RankChannelsDifferently) {
  auto w = torch::tensor({1.0, 1.0, 1.0, 1.0, 3.0, 0.0, 0.0, 0.0}).view({2, 4});  // L1 4 vs 3, L2 2 vs 3
  EXPECT_TRUE(torch::equal(channel_keep(w, 0.5, 1), torch::tensor({true, false})));
  EXPECT_TRUE(torch::equal(channel_keep(w, 0.5, 2), torch::tensor({false, true})));
  auto conv = torch::zeros({5, 2, 3, 3});  // all equal: the lower channels go first
  EXPECT_TRUE(torch::equal(channel_keep(conv, 0.4, 1), torch::tensor({false, false, true, true, true})));
  // round_to: 40 of 64 channels kept at 0.375 (24 pruned), rounded down to 32 with 16;
  // the 32 kept are the largest; fewer kept than round_to are left as they are.
  auto wide = torch::arange(64, torch::kFloat).add(1).view({64, 1, 1, 1});
  auto rounded = channel_keep(wide, 0.375, 1, 16);
  EXPECT_EQ(channel_keep(wide, 0.375, 1).sum().item<int64_t>(), 40);
  EXPECT_EQ(rounded.sum().item<int64_t>(), 32);
  EXPECT_TRUE(rounded.narrow(0, 32, 32).all().item<bool>());
  EXPECT_EQ(channel_keep(wide, 0.9, 1, 16).sum().item<int64_t>(), 7);
}

TEST(Semi24, TwoOfEveryFourAlongTheInputDim) {
  auto w = torch::tensor({1.0, -4.0, 3.0, 2.0, /**/ 0.5, 0.5, 0.5, 0.5, /**/ -9.0, 1.0, 8.0, 0.0}).view({1, 12});
  auto m = semi_structured_mask(w);
  auto expected = torch::tensor({false, true, true, false, false, false, true, true, true, false, true, false}).view({1, 12});
  EXPECT_TRUE(torch::equal(m, expected)) << m;

  torch::manual_seed(1);
  auto conv = torch::randn({3, 8, 3, 3});  // groups run along the input channels at each kernel position
  auto cm = semi_structured_mask(conv);
  EXPECT_EQ(cm.sizes(), conv.sizes());
  auto per_group = cm.permute({0, 2, 3, 1}).reshape({3, 3, 3, 2, 4}).sum(-1);
  EXPECT_TRUE(per_group.eq(2).all().item<bool>());
  EXPECT_NEAR(test::sparsity_of(cm), 0.5, 1e-12);
  // Within a group, the kept two are the largest.
  auto g = conv.abs().permute({0, 2, 3, 1}).reshape({-1, 4});
  auto k = cm.permute({0, 2, 3, 1}).reshape({-1, 4});
  auto kept_min = g.masked_fill(k.logical_not(), 1e9).amin(1);
  auto pruned_max = g.masked_fill(k, -1).amax(1);
  EXPECT_TRUE(pruned_max.le(kept_min).all().item<bool>());
  expect_error<Error>([] { semi_structured_mask(torch::randn({2, 6})); }, {"not a multiple of 4"});
}

TEST(Structured, ConvBatchNormConvFlattenFcHead) {
  auto model = test::random_model(test::small_cnn(), 2);
  auto masks = compute_masks(*model, options("l1_structured", 0.5));
  // Every conv and fc0 lose half their outputs; the head keeps its classes.
  const std::vector<std::pair<std::string, int64_t>> widths = {
      {"stage0.conv0", 4}, {"stage0.conv1", 4}, {"stage1.conv0", 8}, {"stage1.conv1", 8}, {"fc0", 6}};
  for (const auto& [layer, out] : widths) {
    const auto& m = masks.at(layer + ".weight");
    EXPECT_EQ(rows_kept(m).logical_not().sum().item<int64_t>(), out / 2) << layer;
  }
  EXPECT_TRUE(rows_kept(masks.at("head.weight")).all().item<bool>());

  // conv -> its batch norm -> the next conv's input channels.
  auto keep0 = rows_kept(masks.at("stage0.conv0.weight"));
  EXPECT_TRUE(torch::equal(masks.at("stage0.bn0.weight"), keep0));
  EXPECT_TRUE(torch::equal(masks.at("stage0.bn0.bias"), keep0));
  const auto& next = masks.at("stage0.conv1.weight");  // [4, 4, 3, 3]
  auto keep1 = rows_kept(next);
  for (int64_t o = 0; o < 4; ++o)
    for (int64_t i = 0; i < 4; ++i)
      EXPECT_EQ(next[o][i].all().item<bool>(), keep1[o].item<bool>() && keep0[i].item<bool>()) << o << "," << i;
  // The rows follow the channels' L1 norms: the two smallest of stage0.conv0 go.
  auto norms = param(*model, "stage0.conv0.weight").abs().flatten(1).sum(1);
  auto order = std::get<1>(norms.sort());
  EXPECT_FALSE(keep0[order[0]].item<bool>());
  EXPECT_FALSE(keep0[order[1]].item<bool>());

  // Across the flatten: channel c of stage1.conv1 is fc0's columns [c * 49, (c + 1) * 49).
  auto keep_last = rows_kept(masks.at("stage1.conv1.weight"));
  const auto& fc0 = masks.at("fc0.weight");  // [6, 8 * 7 * 7]
  auto keep_fc0 = rows_kept(fc0);
  for (int64_t c = 0; c < 8; ++c) {
    auto cols = fc0.narrow(1, c * 49, 49);
    for (int64_t o = 0; o < 6; ++o) {
      const bool kept = keep_fc0[o].item<bool>() && keep_last[c].item<bool>();
      EXPECT_EQ(cols[o].all().item<bool>(), kept) << o << "," << c;  // whole blocks: no partial channel
      EXPECT_EQ(cols[o].any().item<bool>(), kept) << o << "," << c;
    }
  }
  // fc0 neurons -> fc0 bias -> head input columns.
  EXPECT_TRUE(torch::equal(masks.at("fc0.bias"), keep_fc0));
  EXPECT_TRUE(torch::equal(masks.at("head.weight").all(0), keep_fc0));
  EXPECT_FALSE(masks.contains("head.bias"));
  // Deterministic: the same weights give the same masks.
  auto again = compute_masks(*model, options("l1_structured", 0.5));
  for (const auto& [name, m] : masks.tensors()) EXPECT_TRUE(torch::equal(m, again.at(name))) << name;
}

TEST(Structured, AveragePoolAndConvBiasWithoutBatchNorm) {
  auto model = test::random_model(test::small_cnn(/*batch_norm=*/false, "avg"), 3);
  auto masks = compute_masks(*model, options("l2_structured", 0.25));
  auto keep = rows_kept(masks.at("stage1.conv1.weight"));
  EXPECT_EQ(keep.logical_not().sum().item<int64_t>(), 2);
  EXPECT_TRUE(torch::equal(masks.at("stage1.conv1.bias"), keep));
  EXPECT_TRUE(torch::equal(masks.at("fc0.weight").any(0), keep));  // after avg: one column per channel
  EXPECT_EQ(masks.at("fc0.weight").size(1), 8);
}

TEST(Structured, MlpNeuronsFollowToTheNextLayer) {
  models::ModelOptions o;
  o.name = "mlp";
  o.hidden = {10, 8};
  auto model = test::random_model(o, 4);
  PruneOptions po = options("l1_structured", 0.5);
  YAML::Node layers;
  layers["fc1"] = 0.25;
  po.layers = layers;
  auto masks = compute_masks(*model, po);
  auto k0 = rows_kept(masks.at("fc0.weight"));
  auto k1 = rows_kept(masks.at("fc1.weight"));
  EXPECT_EQ(k0.logical_not().sum().item<int64_t>(), 5);
  EXPECT_EQ(k1.logical_not().sum().item<int64_t>(), 2);  // the override
  EXPECT_TRUE(torch::equal(masks.at("fc1.weight").any(0), k0));
  EXPECT_TRUE(torch::equal(masks.at("head.weight").all(0), k1));
}

TEST(Unstructured, PerLayerOverridesSkipAndGlobal) {
  auto model = test::random_model(test::small_cnn(), 5);
  PruneOptions po = options("magnitude", 0.5);
  po.layers = YAML::Load("{stage0: {conv0: 0.2}, fc0: 0.75}");  // nested, as `+prune.layers.stage0.conv0=0.2` gives
  po.skip = {"head", "stage1.conv0"};
  auto masks = compute_masks(*model, po);
  EXPECT_NEAR(test::sparsity_of(masks.at("stage0.conv0.weight")), std::floor(0.2 * 36) / 36, 1e-12);
  EXPECT_NEAR(test::sparsity_of(masks.at("stage0.conv1.weight")), std::floor(0.5 * 144) / 144, 1e-12);
  EXPECT_NEAR(test::sparsity_of(masks.at("fc0.weight")), 0.75, 1e-12);
  EXPECT_FALSE(masks.contains("stage1.conv0.weight"));
  EXPECT_FALSE(masks.contains("head.weight"));
  EXPECT_FALSE(masks.contains("stage0.conv0.bias"));

  // Global: one threshold over the layers without their own sparsity.
  po.method = "global_magnitude";
  auto g = compute_masks(*model, po);
  int64_t pooled = 0, pruned = 0;
  double threshold_kept = 1e9, threshold_pruned = 0;
  for (const auto& name : {"stage0.conv1.weight", "stage1.conv1.weight"}) {
    const auto& m = g.at(name);
    auto w = param(*model, name).abs();
    pooled += m.numel();
    pruned += m.logical_not().sum().item<int64_t>();
    threshold_kept = std::min(threshold_kept, w.masked_select(m).min().item<double>());
    threshold_pruned = std::max(threshold_pruned, w.masked_select(m.logical_not()).max().item<double>());
  }
  EXPECT_EQ(pruned, prune_count(0.5, pooled));
  EXPECT_LE(threshold_pruned, threshold_kept);
  EXPECT_NEAR(test::sparsity_of(g.at("fc0.weight")), 0.75, 1e-12);  // overridden: alone
}

TEST(Unstructured, PruningAPrunedModelKeepsItsMasks) {
  auto model = test::random_model(test::small_cnn(), 6);
  auto first = compute_masks(*model, options("magnitude", 0.3));
  first.apply(*model);
  auto second = compute_masks(*model, options("magnitude", 0.6), first);
  for (const auto& [name, m] : first.tensors())
    EXPECT_FALSE(m.logical_not().logical_and(second.at(name)).any().item<bool>()) << name;
  EXPECT_NEAR(test::sparsity_of(second.at("fc0.weight")), 0.6, 1e-3);
}

TEST(Masks, ApplyStateRoundTripAndCheck) {
  auto model = test::random_model(test::small_cnn(), 7);
  auto masks = compute_masks(*model, options("l1_structured", 0.5));
  masks.apply(*model);
  for (const auto& [name, m] : masks.tensors())
    EXPECT_TRUE(param(*model, name).masked_select(m.logical_not()).eq(0).all().item<bool>()) << name;
  auto state = masks.state_dict();
  ASSERT_TRUE(state.count("mask.stage0.conv0.weight"));
  auto back = Masks::from_state_dict(state);
  ASSERT_EQ(back.size(), masks.size());
  for (const auto& [name, m] : masks.tensors()) EXPECT_TRUE(torch::equal(m, back.at(name)));

  Masks bad;
  bad.set("stage0.cnv0.weight", torch::ones({4, 1, 3, 3}));
  bad.set("fc0.weight", torch::ones({6, 3}));
  expect_error<CheckpointError>([&] { bad.check(*model, "run/x"); },
                                {"run/x", "unknown parameter 'stage0.cnv0.weight'", "did you mean 'stage0.conv0.weight'",
                                 "mask 'fc0.weight' has shape [6, 3], the parameter [6, 392]"});
  launch::LocalCommunicator local;
  back.broadcast(local);  // one rank: unchanged
  EXPECT_EQ(back.size(), masks.size());
}

TEST(BadInput, SparsityOutsideTheUnitInterval) {
  auto model = test::random_model(test::small_cnn(), 8);
  expect_error<ConfigError>([&] { compute_masks(*model, options("magnitude", 1.0)); },
                            {"prune.sparsity", "[0, 1)", "got 1"});
  expect_error<ConfigError>([&] { compute_masks(*model, options("magnitude", -0.1)); }, {"prune.sparsity", "-0.1"});
  PruneOptions po = options("magnitude", 0.5);
  po.layers = YAML::Load("{stage0.conv0: 1.5}");
  expect_error<ConfigError>([&] { compute_masks(*model, po); }, {"prune.layers.stage0.conv0", "[0, 1)", "1.5"});
  po.layers = YAML::Load("{stage0.conv0: lots}");
  expect_error<ConfigError>([&] { compute_masks(*model, po); }, {"prune.layers.stage0.conv0", "'lots'"});
  po = options("magnitude", 0.5);
  po.scan_sparsities = {0.2, 1.0};
  expect_error<ConfigError>([&] { po.validate(); }, {"prune.scan_sparsities", "got 1"});
  expect_error<ConfigError>([&] { compute_masks(*model, options("l3_structured", 0.5)); },
                            {"prune.method", "'l3_structured'", "l1_structured"});
}

TEST(BadInput, UnknownLayerNamesGetASuggestion) {
  auto model = test::random_model(test::small_cnn(), 9);
  PruneOptions po = options("magnitude", 0.5);
  po.layers = YAML::Load("{stage0.cnv0: 0.2}");
  expect_error<ConfigError>([&] { compute_masks(*model, po); },
                            {"prune.layers: unknown layer 'stage0.cnv0'", "did you mean 'stage0.conv0'",
                             "prunable layers: stage0.conv0, stage0.conv1, stage1.conv0, stage1.conv1, fc0, head"});
  po = options("magnitude", 0.5);
  po.skip = {"hed"};
  expect_error<ConfigError>([&] { compute_masks(*model, po); }, {"prune.skip: unknown layer 'hed'", "'head'"});
  po = options("magnitude", 0.5);
  po.layers = YAML::Load("{head: 0.2}");
  expect_error<ConfigError>([&] { compute_masks(*model, po); }, {"prune.layers.head", "also in prune.skip"});
}

TEST(BadInput, MethodThatDoesNotFitTheLayer) {
  auto model = test::random_model(test::small_cnn(), 10);
  // 2:4 along stage0.conv0's single input channel.
  expect_error<ConfigError>([&] { compute_masks(*model, options("2:4", 0.5)); },
                            {"prune.method=2:4", "layer 'stage0.conv0' has 1 input channels, not a multiple of 4",
                             "prune.skip=[head,stage0.conv0]"});
  PruneOptions po = options("2:4", 0.5);
  po.skip = {"head", "stage0.conv0"};
  auto masks = compute_masks(*model, po);
  EXPECT_NEAR(test::sparsity_of(masks.at("stage0.conv1.weight")), 0.5, 1e-12);
  EXPECT_NEAR(test::sparsity_of(masks.at("fc0.weight")), 0.5, 1e-12);
  po.layers = YAML::Load("{fc0: 0.3}");
  expect_error<ConfigError>([&] { compute_masks(*model, po); }, {"prune.layers.fc0", "2:4 prunes exactly half"});
  // Structured on the classifier: its outputs are the classes.
  po = options("l1_structured", 0.5);
  po.skip = {};
  expect_error<ConfigError>([&] { compute_masks(*model, po); }, {"layer 'head' is the output layer"});
  // Structured on an architecture without a known layer graph.
  models::ModelOptions vit;
  vit.name = "vit";
  vit.dim = 16;
  vit.depth = 1;
  vit.heads = 2;
  vit.pool = "cls";
  auto v = models::make_model(vit);
  expect_error<ConfigError>([&] { compute_masks(*v, options("l2_structured", 0.5)); }, {"cnn and mlp only"});
  auto vm = compute_masks(*v, options("magnitude", 0.5));  // unstructured works on any layer
  EXPECT_FALSE(vm.empty());
  po = options("magnitude", 0.5);
  po.compact = true;
  expect_error<ConfigError>([&] { po.validate(); }, {"prune.compact", "structured"});
}
