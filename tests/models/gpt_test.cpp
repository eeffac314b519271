// The gpt family (models/gpt.h), its generation (models/generate.h) and GPT-2 interop
// (models/hf_gpt2.h), checked against the PyTorch twin in bench/reference/gpt2.py.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "amp/autocast.h"
#include "amp/ops.h"
#include "core/error.h"
#include "models/generate.h"
#include "models/gpt.h"
#include "models/hf_gpt2.h"
#include "models/models.h"
#include "tests/common/expect.h"
#include "tests/common/gpt.h"
#include "tests/common/paths.h"
#include "tests/common/temp_dir.h"

namespace fs = std::filesystem;
using namespace retort;
using namespace retort::models;
using test::expect_error;
using test::TempDir;

namespace {

using test::gpt_options;

std::shared_ptr<Gpt> make_gpt(const ModelOptions& o, uint64_t seed = 1) {
  torch::manual_seed(seed);
  auto m = std::dynamic_pointer_cast<Gpt>(make_model(o));
  EXPECT_TRUE(m) << "registry name gpt builds a models::Gpt";
  return m;
}

bool have_python_torch() { return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0; }

// Runs bench/reference/gpt2.py with `args`; its output on failure.
void run_twin(const std::string& args) {
  const std::string cmd =
      "cd " + (test::source_dir() / "bench" / "reference").string() + " && /usr/bin/python3 gpt2.py " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr) << cmd;
  std::array<char, 4096> buf{};
  std::string text;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) text.append(buf.data(), n);
  ASSERT_EQ(::pclose(p), 0) << cmd << "\n" << text;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Moves every parameter off GPT-2's init (biases, layer norms included), so a golden test
// sees each of them matter.
void jitter(torch::nn::Module& m, double scale, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.add_(torch::randn_like(p) * scale);
}

}  // namespace

TEST(GptModel, ShapesNamesAndTiedEmbedding) {
  auto m = make_gpt(gpt_options());
  auto ids = torch::randint(0, 61, {2, 7}, torch::kLong);
  auto out = m->forward(ids);
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 7, 61}));
  ASSERT_EQ(out.hidden.size(), 2u);
  EXPECT_EQ(out.hidden[1].sizes(), (std::vector<int64_t>{2, 7, 24}));
  EXPECT_TRUE(out.attention.empty()) << "attention maps only when asked";
  EXPECT_EQ(m->hidden_names(), (std::vector<std::string>{"layer0", "layer1"}));
  EXPECT_EQ(m->hidden_kinds(), (std::vector<std::string>{"vector", "vector"}));
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, t] : named_state(*m)) shapes[name] = t.sizes().vec();
  const std::map<std::string, std::vector<int64_t>> hf = {
      {"transformer.wte.weight", {61, 24}},           {"transformer.wpe.weight", {16, 24}},
      {"transformer.h.1.ln_1.weight", {24}},          {"transformer.h.1.ln_1.bias", {24}},
      {"transformer.h.1.attn.c_attn.weight", {24, 72}}, {"transformer.h.1.attn.c_attn.bias", {72}},
      {"transformer.h.1.attn.c_proj.weight", {24, 24}}, {"transformer.h.1.ln_2.weight", {24}},
      {"transformer.h.1.mlp.c_fc.weight", {24, 40}},  {"transformer.h.1.mlp.c_proj.weight", {40, 24}},
      {"transformer.h.1.mlp.c_proj.bias", {24}},      {"transformer.ln_f.weight", {24}},
      {"transformer.ln_f.bias", {24}}};
  for (const auto& [name, shape] : hf) {
    ASSERT_TRUE(shapes.count(name)) << name;
    EXPECT_EQ(shapes[name], shape) << name;
  }
  EXPECT_EQ(shapes.size(), 2 + 2 * 12 + 2u) << "no lm_head.weight: the output projection is wte";
  // The output projection is the token embedding: its gradient gets both uses.
  out.logits.sum().backward();
  EXPECT_TRUE(m->named_parameters()["transformer.wte.weight"].grad().defined());
}

TEST(GptModel, ParameterCountFollowsTheFormula) {
  auto count = [](int64_t V, int64_t P, int64_t D, int64_t L, int64_t M) {
    const int64_t layer = 2 * 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * M + M) + (M * D + D);
    return V * D + P * D + L * layer + 2 * D;
  };
  EXPECT_EQ(count_parameters(*make_gpt(gpt_options())), count(61, 16, 24, 2, 40));
  EXPECT_EQ(count_parameters(*make_gpt(gpt_options(256, 32, 32, 3, 4, 0))), count(256, 32, 32, 3, 4 * 32));
  EXPECT_EQ(make_gpt(gpt_options(256, 32, 32, 3, 4, 0))->mlp_width(), 128) << "mlp_dim 0: GPT-2's 4 * dim";
}

TEST(GptModel, InitialisationIsGpt2sAndFollowsTheSeed) {
  auto o = gpt_options(512, 64, 96, 4, 4, 0);
  auto a = make_gpt(o, 5), b = make_gpt(o, 5), c = make_gpt(o, 6);
  auto wa = weights_of(*a), wb = weights_of(*b), wc = weights_of(*c);
  for (const auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb.at(name))) << name;
  EXPECT_FALSE(torch::equal(wa.at("transformer.wte.weight"), wc.at("transformer.wte.weight")));
  auto std_of = [&](const std::string& name) { return wa.at(name).std().item<double>(); };
  EXPECT_NEAR(std_of("transformer.wte.weight"), 0.02, 0.001);
  EXPECT_NEAR(std_of("transformer.wpe.weight"), 0.02, 0.002);
  EXPECT_NEAR(std_of("transformer.h.0.attn.c_attn.weight"), 0.02, 0.001);
  EXPECT_NEAR(std_of("transformer.h.0.mlp.c_fc.weight"), 0.02, 0.001);
  const double residual = 0.02 / std::sqrt(2.0 * 4);  // scaled by 1/sqrt(2 layers)
  EXPECT_NEAR(std_of("transformer.h.3.attn.c_proj.weight"), residual, 0.001);
  EXPECT_NEAR(std_of("transformer.h.3.mlp.c_proj.weight"), residual, 0.0005);
  EXPECT_TRUE(torch::equal(wa.at("transformer.h.0.attn.c_attn.bias"), torch::zeros({3 * 96})));
  EXPECT_TRUE(torch::equal(wa.at("transformer.h.0.ln_1.weight"), torch::ones({96})));
}

TEST(GptModel, AttentionMapsWhenAskedAreCausal) {
  auto m = make_gpt(gpt_options());
  m->set_keep_attention(true);
  jitter(*m, 0.3, 2);  // peaked, not uniform, attention
  auto out = m->forward(torch::randint(0, 61, {2, 9}, torch::kLong));
  ASSERT_EQ(out.attention.size(), 2u);
  for (const auto& a : out.attention) {
    EXPECT_EQ(a.sizes(), (std::vector<int64_t>{2, 3, 9, 9}));
    EXPECT_TRUE(torch::allclose(a.sum(-1), torch::ones({2, 3, 9}), 1e-5, 1e-6)) << "rows sum to 1";
    EXPECT_EQ(a.triu(1).abs().max().item<float>(), 0.0f) << "no weight on later tokens";
    EXPECT_GT(a.tril(-1).abs().max().item<float>(), 0.0f);
  }
}

TEST(GptModel, OutputsDoNotDependOnLaterTokens) {
  auto m = make_gpt(gpt_options());
  m->eval();
  auto ids = torch::randint(0, 61, {1, 10}, torch::kLong);
  auto changed = ids.clone();
  changed[0][6] = (ids[0][6].item<int64_t>() + 1) % 61;
  auto a = m->forward(ids).logits, b = m->forward(changed).logits;
  EXPECT_TRUE(torch::equal(a.slice(1, 0, 6), b.slice(1, 0, 6)));
  EXPECT_FALSE(torch::equal(a.slice(1, 6), b.slice(1, 6)));
}

TEST(GptModel, Bf16AutocastIsCloseToFp32AndTrains) {
  auto m = make_gpt(gpt_options());
  m->set_keep_attention(true);
  auto ids = torch::randint(0, 61, {2, 12}, torch::kLong);
  auto fp32 = m->forward(ids).logits.detach();
  Output out;
  {
    amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
    out = m->forward(ids);
  }
  EXPECT_EQ(out.logits.scalar_type(), torch::kBFloat16);     // the tied head is a low-precision matmul
  EXPECT_EQ(out.attention[0].scalar_type(), torch::kFloat);  // softmax runs in fp32
  EXPECT_EQ(out.hidden[0].scalar_type(), torch::kFloat);     // the residual stream stays fp32
  EXPECT_LT(max_diff(out.logits, fp32), 0.02);
  auto loss = amp::cross_entropy(out.logits.reshape({-1, 61}), ids.reshape({-1}));
  loss.backward();
  for (const auto& kv : m->named_parameters()) {
    ASSERT_TRUE(kv.value().grad().defined()) << kv.key();
    EXPECT_EQ(kv.value().grad().scalar_type(), torch::kFloat) << kv.key();
  }
}

TEST(GptModel, BadOptionsAndInputsNameTheKey) {
  auto bad = [](auto change, std::initializer_list<std::string> needles) {
    auto o = gpt_options();
    change(o);
    expect_error<ConfigError>([&] { make_model(o); }, needles);
  };
  bad([](ModelOptions& o) { o.heads = 5; }, {"model.heads", "5", "model.dim 24"});
  bad([](ModelOptions& o) { o.vocab_size = 0; }, {"model.vocab_size", ">= 1", "got 0"});
  bad([](ModelOptions& o) { o.context = 0; }, {"model.context"});
  bad([](ModelOptions& o) { o.mlp_dim = -1; }, {"model.mlp_dim", "got -1"});
  bad([](ModelOptions& o) { o.depth = 0; }, {"model.depth"});
  bad([](ModelOptions& o) { o.dropout = 1.0; }, {"model.dropout"});
  auto m = make_gpt(gpt_options());
  expect_error<ConfigError>([&] { m->forward(torch::zeros({1, 17}, torch::kLong)); },
                            {"model.context", "16 positions", "17 tokens"});
  expect_error<DataError>([&] { m->forward(torch::zeros({1, 4})); }, {"int64", "Float"});
  expect_error<DataError>([&] { m->forward(torch::zeros({4}, torch::kLong)); }, {"[batch, tokens"});
}

TEST(GptModel, OptionsReadFromYaml) {
  auto o = read_model_options(YAML::Load("{name: gpt, vocab_size: 300, context: 64, mlp_dim: 100}"), "model");
  EXPECT_EQ(o.vocab_size, 300);
  EXPECT_EQ(o.context, 64);
  EXPECT_EQ(o.mlp_dim, 100);
  const ModelOptions defaults;
  EXPECT_EQ(defaults.vocab_size, 256);
  EXPECT_EQ(defaults.context, 256);
  EXPECT_EQ(defaults.mlp_dim, 0);
  expect_error<ConfigError>([] { read_model_options(YAML::Load("{name: gpt, context: 0}"), "model"); },
                            {"model.context"});
}

TEST(GptCache, IncrementalLogitsEqualTheFullForward) {
  auto m = make_gpt(gpt_options());
  jitter(*m, 0.2, 3);
  m->eval();
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, 61, {2, 16}, torch::kLong);
  auto full = m->forward(ids).logits;
  KvCache cache;
  std::vector<torch::Tensor> steps = {m->forward_cached(ids.slice(1, 0, 5), cache)};  // the prompt once
  EXPECT_EQ(cache.length(), 5);
  for (int64_t t = 5; t < 16; ++t) steps.push_back(m->forward_cached(ids.slice(1, t, t + 1), cache));
  EXPECT_EQ(cache.length(), 16);
  EXPECT_LT(max_diff(torch::cat(steps, 1), full), 1e-5);
  expect_error<ConfigError>([&] { m->forward_cached(ids.slice(1, 0, 1), cache); },
                            {"model.context", "16 positions", "16 cached + 1 tokens"});
  KvCache other;
  m->forward_cached(ids.slice(1, 0, 2), other);
  expect_error<Error>([&] { m->forward_cached(ids.slice(0, 0, 1).slice(1, 2, 3), other); }, {"batch 2"});
}

// A pruned gpt keeps its heads' width while losing heads: 2 heads of 8 in a model of width 24.
TEST(GptHeadDim, WidthOfItsOwnShapesForwardAndCacheAgree) {
  auto o = gpt_options();
  o.heads = 2;
  o.head_dim = 8;
  auto m = make_gpt(o);
  EXPECT_EQ(m->head_width(), 8);
  auto params = m->named_parameters();
  EXPECT_EQ(params["transformer.h.0.attn.c_attn.weight"].sizes(), (std::vector<int64_t>{24, 48}));
  EXPECT_EQ(params["transformer.h.0.attn.c_attn.bias"].sizes(), (std::vector<int64_t>{48}));
  EXPECT_EQ(params["transformer.h.0.attn.c_proj.weight"].sizes(), (std::vector<int64_t>{16, 24}));
  EXPECT_EQ(make_gpt(gpt_options())->head_width(), 8) << "head_dim 0: dim / heads";
  jitter(*m, 0.2, 4);
  m->eval();
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, 61, {2, 16}, torch::kLong);
  auto full = m->forward(ids).logits;
  EXPECT_EQ(full.sizes(), (std::vector<int64_t>{2, 16, 61}));
  KvCache cache;
  std::vector<torch::Tensor> steps = {m->forward_cached(ids.slice(1, 0, 5), cache)};
  for (int64_t t = 5; t < 16; ++t) steps.push_back(m->forward_cached(ids.slice(1, t, t + 1), cache));
  EXPECT_EQ(cache.keys.front().sizes(), (std::vector<int64_t>{2, 2, 16, 8}));
  EXPECT_LT(max_diff(torch::cat(steps, 1), full), 1e-5);
  // Greedy generation (through the cache) picks the argmax of the full forward at each step.
  GenerateOptions g;
  g.tokens = 6;
  g.temperature = 0;
  const std::vector<int64_t> prompt = {3, 1, 4};
  const auto tokens = generate(*m, prompt, g);
  ASSERT_EQ(tokens.size(), 6u);
  std::vector<int64_t> seq = prompt;
  for (int64_t next : tokens) {
    const auto logits = m->forward(torch::tensor(seq, torch::kLong).unsqueeze(0)).logits[0][-1];
    EXPECT_EQ(next, logits.argmax().item<int64_t>());
    seq.push_back(next);
  }
  // No divisibility needed with head_dim set; a negative one is refused.
  auto odd = gpt_options();
  odd.dim = 25;
  odd.heads = 2;
  odd.head_dim = 8;
  EXPECT_EQ(make_gpt(odd)->forward(ids).logits.size(2), 61);
  odd.head_dim = -1;
  expect_error<ConfigError>([&] { make_model(odd); }, {"model.head_dim", "got -1"});
  EXPECT_EQ(read_model_options(YAML::Load("{name: gpt, head_dim: 32}"), "model").head_dim, 32);
}

TEST(GptGenerate, SameSeedSameTokensAndGreedyIsTheArgmax) {
  auto m = make_gpt(gpt_options());
  jitter(*m, 0.3, 4);
  const std::vector<int64_t> prompt = {3, 14, 15, 9};
  GenerateOptions g;
  g.tokens = 10;
  g.temperature = 0.9;
  g.top_k = 20;
  g.seed = 11;
  const auto a = generate(*m, prompt, g);
  EXPECT_EQ(a.size(), 10u);
  EXPECT_EQ(generate(*m, prompt, g), a);
  torch::manual_seed(999);  // the global generator plays no part
  EXPECT_EQ(generate(*m, prompt, g), a);
  g.seed = 12;
  EXPECT_NE(generate(*m, prompt, g), a);
  for (auto t : a) EXPECT_TRUE(t >= 0 && t < 61) << t;

  // Greedy: each token the argmax of the full forward over everything so far.
  g.temperature = 0;
  const auto greedy = generate(*m, prompt, g);
  std::vector<int64_t> seq = prompt;
  m->eval();
  for (int i = 0; i < 10; ++i) {
    torch::NoGradGuard no_grad;
    auto logits = m->forward(torch::tensor(seq, torch::kLong).unsqueeze(0)).logits[0][-1];
    seq.push_back(logits.argmax().item<int64_t>());
  }
  EXPECT_EQ(greedy, std::vector<int64_t>(seq.begin() + 4, seq.end()));
  g.temperature = 1.0;
  g.top_k = 1;
  EXPECT_EQ(generate(*m, prompt, g), greedy) << "top_k 1 keeps only the argmax";
}

TEST(GptGenerate, ErrorsAndTrainingModeRestored) {
  auto m = make_gpt(gpt_options());
  m->train();
  GenerateOptions g;
  g.tokens = 3;
  generate(*m, {1, 2}, g);
  EXPECT_TRUE(m->is_training());
  expect_error<ConfigError>([&] { generate(*m, std::vector<int64_t>(17, 1), g); },
                            {"model.context", "17 tokens", "context of 16"});
  g.tokens = 10;
  expect_error<ConfigError>([&] { generate(*m, std::vector<int64_t>(8, 1), g); },
                            {"model.context", "8 tokens", "10 new tokens", "at most 8"});
  expect_error<ConfigError>([&] { generate(*m, {}, g); }, {"prompt is empty"});
  expect_error<DataError>([&] { generate(*m, {1, 61}, g); }, {"prompt token 1", "61", "[0, 61)"});
  g.temperature = -1;
  expect_error<ConfigError>([&] { generate(*m, {1}, g); }, {"temperature"});
  ModelOptions cnn;
  auto image_model = make_model(cnn);
  expect_error<ConfigError>([&] { generate(*image_model, {1}, GenerateOptions{}); },
                            {"model.name", "'cnn'", "not a language model"});
}

TEST(GptWeights, HuggingFaceExtrasLoadAndAnUntiedHeadIsRefused) {
  auto a = make_gpt(gpt_options(), 1), b = make_gpt(gpt_options(), 2);
  auto w = weights_of(*a);
  w["lm_head.weight"] = w.at("transformer.wte.weight").clone();
  for (int l = 0; l < 2; ++l) {
    w["transformer.h." + std::to_string(l) + ".attn.bias"] = torch::ones({1, 1, 16, 16}).tril();
    w["transformer.h." + std::to_string(l) + ".attn.masked_bias"] = torch::tensor(-1e4);
  }
  load_weights(*b, w, "gpt2/model.safetensors");
  for (const auto& [name, t] : weights_of(*a)) EXPECT_TRUE(torch::equal(t, weights_of(*b).at(name))) << name;

  // A bare GPT2Model's names (the hub's gpt2 files): no "transformer." prefix.
  std::map<std::string, torch::Tensor> bare;
  for (const auto& [name, t] : w) bare[name.rfind("transformer.", 0) == 0 ? name.substr(12) : name] = t;
  auto c = make_gpt(gpt_options(), 3);
  load_weights(*c, bare, "bare");
  EXPECT_TRUE(torch::equal(weights_of(*c).at("transformer.ln_f.bias"), w.at("transformer.ln_f.bias")));

  w["lm_head.weight"] = w.at("lm_head.weight") + 1;
  expect_error<CheckpointError>([&] { load_weights(*b, w, "gpt2/model.safetensors"); },
                                {"gpt2/model.safetensors", "lm_head.weight differs from transformer.wte.weight"});
  w.erase("lm_head.weight");
  w["transformer.h.0.attn.c_attn.weight"] = torch::zeros({72, 24});  // not Conv1D's [in, out]
  expect_error<CheckpointError>([&] { load_weights(*b, w, "x"); }, {"transformer.h.0.attn.c_attn.weight"});
}

TEST(GptHfConfig, WritesWhatGpt2ConfigReadsAndReadsItBack) {
  auto o = gpt_options();
  o.dropout = 0.1;
  const auto j = nlohmann::json::parse(gpt2_config_json(o));
  EXPECT_EQ(j.at("model_type"), "gpt2");
  EXPECT_EQ(j.at("architectures"), nlohmann::json::array({"GPT2LMHeadModel"}));
  EXPECT_EQ(j.at("vocab_size"), 61);
  EXPECT_EQ(j.at("n_positions"), 16);
  EXPECT_EQ(j.at("n_embd"), 24);
  EXPECT_EQ(j.at("n_layer"), 2);
  EXPECT_EQ(j.at("n_head"), 3);
  EXPECT_EQ(j.at("n_inner"), 40);
  EXPECT_EQ(j.at("activation_function"), "gelu_new");
  EXPECT_EQ(j.at("layer_norm_epsilon"), 1e-5);
  EXPECT_EQ(j.at("attn_pdrop"), 0.1);
  EXPECT_EQ(j.at("tie_word_embeddings"), true);
  EXPECT_TRUE(j.at("eos_token_id").is_null()) << "no <|endoftext|> outside GPT-2's vocabulary";
  const auto back = parse_gpt2_config(gpt2_config_json(o), "config.json");
  EXPECT_EQ(back.name, "gpt");
  EXPECT_EQ(back.vocab_size, 61);
  EXPECT_EQ(back.context, 16);
  EXPECT_EQ(back.dim, 24);
  EXPECT_EQ(back.depth, 2);
  EXPECT_EQ(back.heads, 3);
  EXPECT_EQ(back.mlp_dim, 40);
  EXPECT_EQ(back.dropout, 0.1);
  const auto gpt2 = nlohmann::json::parse(gpt2_config_json(gpt_options(50257, 1024, 768, 12, 12, 0)));
  EXPECT_EQ(gpt2.at("bos_token_id"), 50256);
  EXPECT_EQ(gpt2.at("eos_token_id"), 50256);
  EXPECT_EQ(gpt2.at("n_inner"), 3072);

  const TempDir dir("gpt-config");
  write_gpt2_config(dir / "config.json", o);
  EXPECT_EQ(read_gpt2_config(dir).mlp_dim, 40) << "a folder reads its config.json";
  ModelOptions cnn;
  expect_error<ConfigError>([&] { gpt2_config_json(cnn); }, {"model.name", "'cnn'"});
}

TEST(GptHfConfig, AHeadWidthGpt2CannotExpressIsRefused) {
  auto o = gpt_options();  // dim 24, 3 heads
  o.heads = 2;
  o.head_dim = 8;
  expect_error<ConfigError>([&] { gpt2_config_json(o); },
                            {"model.head_dim: 8", "model.heads 2", "16", "model.dim 24", "n_embd / n_head"});
  const TempDir dir("gpt-config-head-dim");
  expect_error<ConfigError>([&] { write_gpt2_config(dir / "config.json", o); }, {"model.head_dim"});
  EXPECT_FALSE(fs::exists(dir / "config.json"));
  o.heads = 3;  // 3 * 8 == 24: the width GPT-2 derives, so it is written
  EXPECT_EQ(nlohmann::json::parse(gpt2_config_json(o)).at("n_head"), 3);
}

TEST(GptHfConfig, ConfigsThisModelCannotComputeAreRefused) {
  const std::string base = gpt2_config_json(gpt_options());
  auto with = [&](const std::string& key, std::optional<nlohmann::json> value) {  // nullopt: removed
    auto j = nlohmann::json::parse(base);
    if (value)
      j[key] = *value;
    else
      j.erase(key);
    return j.dump();
  };
  auto refused = [](const std::string& text, std::initializer_list<std::string> needles) {
    expect_error<CheckpointError>([&] { parse_gpt2_config(text, "gpt2/config.json"); }, needles);
  };
  refused(with("model_type", "bert"), {"gpt2/config.json", "model_type", "\"bert\""});
  refused(with("vocab_size", std::nullopt), {"vocab_size", "positive integer", "nothing"});
  refused(with("n_embd", "24"), {"n_embd", "positive integer"});
  refused(with("n_head", 5), {"n_head", "does not divide n_embd 24"});
  refused(with("activation_function", "relu"), {"activation_function", "relu", "gelu_new"});
  refused(with("layer_norm_epsilon", 1e-6), {"layer_norm_epsilon", "is 1e-06", "use 1e-5"});
  refused(with("scale_attn_by_inverse_layer_idx", true), {"scale_attn_by_inverse_layer_idx"});
  refused(with("add_cross_attention", true), {"add_cross_attention"});
  refused(with("tie_word_embeddings", false), {"tie_word_embeddings"});
  refused("{not json", {"gpt2/config.json", "not valid JSON"});
  // n_inner null is GPT-2's 4 * n_embd; n_ctx stands in for a missing n_positions.
  const auto o = parse_gpt2_config(with("n_positions", std::nullopt), "c");
  EXPECT_EQ(o.context, 16);
  EXPECT_EQ(parse_gpt2_config(with("n_inner", nullptr), "c").mlp_dim, 0);
  expect_error<CheckpointError>([] { read_gpt2_config("/nonexistent/gpt2"); },
                                {"'/nonexistent/gpt2' not found", "a config.json or a folder holding one"});
  const TempDir empty("gpt-empty");
  expect_error<CheckpointError>([&] { read_gpt2_config(empty); }, {(empty / "config.json").string(), "not found"});
}

// retort's export (weights + config.json) into the PyTorch twin: the same logits, hidden
// states and attention maps.
TEST(GptGolden, RetortExportLoadsIntoThePyTorchTwin) {
  if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not installed";
  auto m = make_gpt(gpt_options());
  jitter(*m, 0.3, 7);
  m->eval();
  m->set_keep_attention(true);
  const TempDir dir("gpt-export");
  save_safetensors(dir / "model.safetensors", weights_of(*m), {{"format", "pt"}});
  write_gpt2_config(dir / "config.json", m->options());
  torch::manual_seed(8);
  auto ids = torch::randint(0, 61, {3, 16}, torch::kLong);
  save_safetensors(dir / "ids.safetensors", {{"ids", ids}});
  run_twin("logits " + dir.string());
  const auto twin = load_safetensors(dir / "torch.safetensors").tensors;
  torch::NoGradGuard no_grad;
  auto out = m->forward(ids);
  EXPECT_LT(max_diff(out.logits, twin.at("logits")), 1e-5);
  for (size_t l = 0; l < 2; ++l) {
    EXPECT_LT(max_diff(out.hidden[l], twin.at("hidden." + std::to_string(l))), 1e-5) << l;
    EXPECT_LT(max_diff(out.attention[l], twin.at("attention." + std::to_string(l))), 1e-6) << l;
  }
}

// A PyTorch-initialised GPT-2 saved as Hugging Face does (attn.bias buffers, lm_head.weight,
// config.json with n_inner null) loads into retort with the same logits.
TEST(GptGolden, PyTorchCheckpointLoadsIntoRetort) {
  if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not installed";
  const TempDir dir("gpt-hf");
  run_twin("init " + dir.string() + " --vocab 67 --context 20 --dim 32 --layers 3 --heads 4 --std 0.3 --jitter 0.1");
  const auto options = read_gpt2_config(dir);
  EXPECT_EQ(options.mlp_dim, 0);
  auto m = make_model(options);
  const auto file = load_safetensors(dir / "model.safetensors");
  EXPECT_TRUE(file.tensors.count("transformer.h.2.attn.bias"));
  EXPECT_TRUE(file.tensors.count("lm_head.weight"));
  load_weights(*m, file.tensors, (dir / "model.safetensors").string());
  m->eval();
  const auto golden = load_safetensors(dir / "golden.safetensors").tensors;
  torch::NoGradGuard no_grad;
  EXPECT_LT(max_diff(m->forward(golden.at("ids")).logits, golden.at("logits")), 1e-5);
}
