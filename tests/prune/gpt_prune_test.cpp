// A gpt pruned into a smaller dense gpt: activation importance ranks what is dead last, and the
// compacted model computes what the big model computes with the removed parts zeroed / skipped.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tests/common/gpt.h"
#include "tests/prune/helpers.h"

using namespace retort;
using namespace retort::prune;
using test::expect_error;

namespace {

/// 3 layers of width 24, 3 heads of 8, MLP 40: every dimension has something to remove.
models::ModelOptions small_gpt() { return test::gpt_options(50, 16, 24, 3, 3, 40); }

/// Random weights everywhere (layer norms around 1, biases nonzero), so no part is special.
std::shared_ptr<models::Gpt> random_gpt(uint64_t seed) {
  torch::manual_seed(seed);
  auto gpt = std::dynamic_pointer_cast<models::Gpt>(models::make_model(small_gpt()));
  torch::NoGradGuard g;
  for (auto& kv : gpt->named_parameters()) {
    const bool norm_weight = kv.key().find("ln_") != std::string::npos && kv.key().find(".weight") != std::string::npos;
    if (norm_weight) kv.value().uniform_(0.5, 1.5);
    else kv.value().normal_(0, kv.value().dim() == 1 ? 0.1 : 0.2);
  }
  gpt->eval();
  return gpt;
}

std::shared_ptr<models::Gpt> clone(const models::Gpt& gpt) {
  auto copy = std::dynamic_pointer_cast<models::Gpt>(models::make_model(gpt.options()));
  models::load_weights(*copy, models::weights_of(gpt), "clone");
  copy->eval();
  return copy;
}

torch::Tensor tokens(uint64_t seed, int64_t batch = 3) {
  torch::manual_seed(seed);
  return torch::randint(0, 50, {batch, 16}, torch::kLong);
}

torch::Tensor logits(models::Model& m, const torch::Tensor& ids) {
  torch::NoGradGuard g;
  m.eval();
  return m.forward(ids).logits;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a - b).abs().max().item<double>();
}

/// The parameter itself (a tensor shares its storage: in-place changes reach the model).
torch::Tensor param(models::Model& m, const std::string& name) { return m.named_parameters()[name]; }

std::string layer(int64_t l) { return "transformer.h." + std::to_string(l) + "."; }

}  // namespace

TEST(GptPrune, KeepingEverythingGivesTheSameModel) {
  auto gpt = random_gpt(1);
  auto c = compact_gpt(*gpt, select_all(*gpt));
  EXPECT_EQ(c.options.dim, 24);
  EXPECT_EQ(c.options.depth, 3);
  EXPECT_EQ(c.options.heads, 3);
  EXPECT_EQ(c.options.mlp_dim, 40);
  EXPECT_EQ(c.options.head_dim, 0) << "3 heads of 8 are dim 24: GPT-2's own width";
  EXPECT_EQ(c.params_after, c.params_before);
  EXPECT_TRUE(c.masks.empty());
  const auto ids = tokens(2);
  const auto big = logits(*gpt, ids);
  EXPECT_EQ(max_diff(logits(*c.model, ids), big), 0.0);
  EXPECT_GT(big.abs().max().item<double>(), 1e-2);
}

// Heads and neurons: the compacted model equals the big one with the removed heads' rows of
// attn.c_proj zeroed, and the removed neurons' columns (and biases) of c_fc zeroed (GELU(0) = 0).
TEST(GptPrune, RemovedHeadsAndNeuronsEqualZeroingThem) {
  auto gpt = random_gpt(3);
  GptSelection keep = select_all(*gpt);
  const std::vector<std::vector<int64_t>> heads = {{0, 2}, {1, 2}, {0, 1}};
  auto reference = clone(*gpt);
  torch::NoGradGuard g;
  for (int64_t l = 0; l < 3; ++l) {
    keep.heads[l] = torch::tensor(heads[l], torch::kLong);
    auto removed_neurons = torch::arange(l, 40, 3, torch::kLong).slice(0, 0, 10);  // 10 of 40, per layer different
    auto kept = torch::ones({40}, torch::kBool).index_fill_(0, removed_neurons, false);
    keep.neurons[l] = kept.nonzero().flatten();
    for (int64_t h = 0; h < 3; ++h)
      if (std::find(heads[l].begin(), heads[l].end(), h) == heads[l].end())
        param(*reference, layer(l) + "attn.c_proj.weight").slice(0, h * 8, h * 8 + 8).zero_();
    param(*reference, layer(l) + "mlp.c_fc.weight").index_fill_(1, removed_neurons, 0);
    param(*reference, layer(l) + "mlp.c_fc.bias").index_fill_(0, removed_neurons, 0);
  }
  auto c = compact_gpt(*gpt, keep);
  EXPECT_EQ(c.options.heads, 2);
  EXPECT_EQ(c.options.head_dim, 8) << "2 heads of 8 in width 24: the width is stated";
  EXPECT_EQ(c.options.mlp_dim, 30);
  EXPECT_EQ(param(*c.model, "transformer.h.0.attn.c_attn.weight").sizes(), (std::vector<int64_t>{24, 48}));
  EXPECT_EQ(c.params_after, models::count_parameters(*c.model));
  const auto ids = tokens(4);
  const auto expected = logits(*reference, ids);
  EXPECT_LT(max_diff(logits(*c.model, ids), expected), 1e-5);
  EXPECT_GT(max_diff(logits(*gpt, ids), expected), 1e-3) << "the removed parts mattered";
  // The compacted model decodes with its KV cache as it computes forward.
  models::KvCache cache;
  auto& small = dynamic_cast<models::Gpt&>(*c.model);
  auto first = small.forward_cached(ids.slice(1, 0, 10), cache);
  auto rest = small.forward_cached(ids.slice(1, 10, 16), cache);
  EXPECT_LT(max_diff(torch::cat({first, rest}, 1), expected), 1e-5);
}

// Layers: the compacted model equals the big one with the removed block skipped, i.e. with both
// of its residual branches (attn.c_proj, mlp.c_proj) zeroed.
TEST(GptPrune, RemovedLayersEqualSkippingThem) {
  auto gpt = random_gpt(5);
  GptSelection keep = select_all(*gpt);
  keep.layers = {0, 2};
  keep.heads.pop_back();
  keep.neurons.pop_back();
  auto reference = clone(*gpt);
  {
    torch::NoGradGuard g;
    for (const char* p : {"attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"})
      param(*reference, layer(1) + p).zero_();
  }
  auto c = compact_gpt(*gpt, keep);
  EXPECT_EQ(c.options.depth, 2);
  EXPECT_TRUE(torch::equal(param(*c.model, layer(1) + "mlp.c_fc.weight"), param(*gpt, layer(2) + "mlp.c_fc.weight")));
  const auto ids = tokens(6);
  const auto expected = logits(*reference, ids);
  EXPECT_LT(max_diff(logits(*c.model, ids), expected), 1e-5);
  EXPECT_GT(max_diff(logits(*gpt, ids), expected), 1e-3);
}

// Channels: no zeroing is equivalent (layer norm's statistics run over every channel), so the
// weights are checked to be the kept slices, and the model to run at its new width.
TEST(GptPrune, KeptChannelsAreSlicedOutOfEveryTensor) {
  auto gpt = random_gpt(7);
  GptSelection keep = select_all(*gpt);
  keep.channels = std::get<0>(torch::tensor({0, 3, 4, 9, 10, 11, 15, 16, 20, 23, 1, 2}, torch::kLong).sort());
  auto c = compact_gpt(*gpt, keep);
  EXPECT_EQ(c.options.dim, 12);
  EXPECT_EQ(c.options.head_dim, 8) << "3 heads of 8 no longer make dim";
  auto& small = *c.model;
  const auto& ch = keep.channels;
  auto sliced = [&](const std::string& name, int64_t dim) {
    return torch::equal(param(small, name), param(*gpt, name).index_select(dim, ch));
  };
  EXPECT_TRUE(sliced("transformer.wte.weight", 1));
  EXPECT_TRUE(sliced("transformer.wpe.weight", 1));
  EXPECT_TRUE(sliced("transformer.ln_f.bias", 0));
  EXPECT_TRUE(sliced(layer(2) + "ln_1.weight", 0));
  EXPECT_TRUE(sliced(layer(2) + "attn.c_attn.weight", 0));
  EXPECT_TRUE(sliced(layer(2) + "attn.c_proj.weight", 1));
  EXPECT_TRUE(sliced(layer(2) + "mlp.c_fc.weight", 0));
  EXPECT_TRUE(sliced(layer(2) + "mlp.c_proj.bias", 0));
  const auto out = logits(small, tokens(8));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{3, 16, 50}));
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
}

// A head whose values are zero, a neuron whose pre-activation is zero, a channel every layer
// norm zeroes, and a block whose branches are zero (the identity) rank last and are dropped.
TEST(GptPrune, ImportanceRanksDeadHeadNeuronChannelAndLayerLast) {
  auto gpt = random_gpt(9);
  {
    torch::NoGradGuard g;
    const int64_t v = 2 * 24, head = 1;  // c_attn columns: q | k | v, head 1 of layer 0
    param(*gpt, layer(0) + "attn.c_attn.weight").slice(1, v + head * 8, v + head * 8 + 8).zero_();
    param(*gpt, layer(0) + "attn.c_attn.bias").slice(0, v + head * 8, v + head * 8 + 8).zero_();
    param(*gpt, layer(1) + "mlp.c_fc.weight").select(1, 7).zero_();
    param(*gpt, layer(1) + "mlp.c_fc.bias")[7].zero_();
    for (const std::string& norm : {layer(0) + "ln_1", layer(0) + "ln_2", layer(1) + "ln_1", layer(1) + "ln_2",
                                    layer(2) + "ln_1", layer(2) + "ln_2", std::string("transformer.ln_f")}) {
      param(*gpt, norm + ".weight")[5].zero_();
      param(*gpt, norm + ".bias")[5].zero_();
    }
    for (const char* p : {"attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"})
      param(*gpt, layer(2) + p).zero_();
  }
  gpt->train();
  const auto importance = gpt_importance(*gpt, {tokens(10), tokens(11, 2)});
  EXPECT_TRUE(gpt->is_training()) << "the model's mode comes back";
  EXPECT_EQ(importance.tokens, 5 * 16);
  EXPECT_EQ(importance.heads.sizes(), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(importance.neurons.sizes(), (std::vector<int64_t>{3, 40}));
  EXPECT_EQ(importance.heads[0][1].item<double>(), 0.0);
  EXPECT_GT(importance.heads[0][0].item<double>(), 0.0);
  EXPECT_GT(importance.heads[0][2].item<double>(), 0.0);
  EXPECT_EQ(importance.neurons[1].argmin().item<int64_t>(), 7);
  EXPECT_EQ(importance.neurons[1][7].item<double>(), 0.0);
  EXPECT_EQ(importance.channels.argmin().item<int64_t>(), 5);
  EXPECT_EQ(importance.channels[5].item<double>(), 0.0);
  EXPECT_EQ(importance.layers.argmin().item<int64_t>(), 2);
  EXPECT_LT(importance.layers[2].item<double>(), 1e-9);
  EXPECT_GT(importance.layers.max().item<double>(), 1e-3);

  GptPruneOptions targets;
  targets.dim = 23;
  targets.depth = 2;
  targets.heads = 2;
  targets.mlp_dim = 39;
  const auto keep = select_gpt(*gpt, importance, targets);
  EXPECT_EQ(keep.layers, (std::vector<int64_t>{0, 1}));
  EXPECT_FALSE((keep.channels == 5).any().item<bool>());
  EXPECT_EQ(keep.channels.numel(), 23);
  EXPECT_FALSE((keep.heads[0] == 1).any().item<bool>());
  EXPECT_FALSE((keep.neurons[1] == 7).any().item<bool>());
  EXPECT_TRUE(torch::equal(keep.neurons[1], std::get<0>(keep.neurons[1].sort()))) << "ascending";
  const std::string table = format_gpt_selection(importance, keep);
  EXPECT_NE(table.find("| 2 |"), std::string::npos) << table;
  EXPECT_NE(table.find("| no |"), std::string::npos) << table;
  // The probe is gone: a forward after the measurement runs as before.
  gpt->eval();
  EXPECT_EQ(logits(*gpt, tokens(12)).size(2), 50);
}

TEST(GptPrune, TargetsTheModelCannotMeetAreRefused) {
  auto gpt = random_gpt(13);
  auto refused = [&](auto change, std::initializer_list<std::string> needles) {
    GptPruneOptions t;
    change(t);
    expect_error<ConfigError>([&] { check_gpt_targets(*gpt, t); }, needles);
    expect_error<ConfigError>([&] { select_gpt(*gpt, gpt_importance(*gpt, {tokens(14)}), t); }, needles);
  };
  refused([](GptPruneOptions& t) { t.dim = 32; }, {"prune.gpt.dim", "32", "24 embedding channels", "1..24"});
  refused([](GptPruneOptions& t) { t.depth = 4; }, {"prune.gpt.depth", "4", "3 layers (model.depth)", "1..3"});
  refused([](GptPruneOptions& t) { t.heads = 4; }, {"prune.gpt.heads", "4", "model.heads", "1..3"});
  refused([](GptPruneOptions& t) { t.mlp_dim = 41; }, {"prune.gpt.mlp_dim", "41", "40 MLP neurons", "1..40"});
  GptPruneOptions all;
  all.dim = 24;  // the model's own sizes are fine
  all.heads = 3;
  EXPECT_NO_THROW(check_gpt_targets(*gpt, all));

  PruneOptions o;
  o.gpt.heads = -1;
  expect_error<ConfigError>([&] { o.validate(); }, {"prune.gpt.heads", "got -1"});
  o.gpt.heads = 2;
  o.gpt.calibration = 0;
  expect_error<ConfigError>([&] { o.validate(); }, {"prune.gpt.calibration", "got 0"});
  expect_error<DataError>([&] { gpt_importance(*gpt, {}); }, {"prune.gpt.calibration"});
}

TEST(GptPrune, OptionsReadFromTheConfig) {
  config::Reader reader(YAML::Load("{prune: {gpt: {dim: 64, depth: 4, heads: 2, mlp_dim: 256, calibration: 8}}}"));
  const auto o = reader.section<PruneOptions>("prune");
  EXPECT_EQ(o.gpt.dim, 64);
  EXPECT_EQ(o.gpt.depth, 4);
  EXPECT_EQ(o.gpt.heads, 2);
  EXPECT_EQ(o.gpt.mlp_dim, 256);
  EXPECT_EQ(o.gpt.calibration, 8);
  EXPECT_TRUE(o.gpt.any());
  EXPECT_FALSE(PruneOptions().gpt.any()) << "by default prune.method prunes";
}
