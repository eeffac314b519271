// distill::Distiller: golden totals, projections, the dry run's errors, the frozen teacher, amp.
#include <gtest/gtest.h>

#include "amp/autocast.h"
#include "amp/ops.h"
#include "core/error.h"
#include "distill/distill.h"
#include "models/models.h"
#include "tests/common/gpt.h"
#include "tests/distill/helpers.h"

using namespace retort;
using test::expect_error;
using test::golden;
using test::golden_value;

namespace {

std::map<std::string, double> term_map(const distill::Losses& l) {
  std::map<std::string, double> m;
  for (const auto& [k, v] : l.terms) m[k] = v.item<double>();
  return m;
}

models::ModelOptions mlp(std::vector<int64_t> hidden, int64_t image = 8) {
  models::ModelOptions o;
  o.name = "mlp";
  o.image_size = image;
  o.hidden = std::move(hidden);
  return o;
}

models::ModelOptions cnn(std::vector<int64_t> channels, std::vector<int64_t> hidden) {
  models::ModelOptions o;
  o.name = "cnn";
  o.channels = std::move(channels);
  o.convs_per_stage = 1;
  o.hidden = std::move(hidden);
  return o;
}

models::ModelOptions vit(int64_t dim, int64_t depth, int64_t heads, const std::string& pool = "cls") {
  models::ModelOptions o;
  o.name = "vit";
  o.image_size = 8;
  o.patch = 4;
  o.dim = dim;
  o.depth = depth;
  o.heads = heads;
  o.pool = pool;
  return o;
}

/// distill_golden.py's MLP pair, its weights loaded: teacher (16, 12) frozen, student (6).
std::pair<std::shared_ptr<models::Model>, std::shared_ptr<models::Model>> golden_mlp_pair() {
  auto teacher = distill::load_teacher_weights(mlp({16, 12}), test::golden_group("mlp.teacher."), "golden teacher");
  auto student = models::make_model(mlp({6}));
  models::load_weights(*student, test::golden_group("mlp.student."), "golden student");
  return {teacher, student};
}

distill::Distiller make(const models::ModelOptions& t, const models::ModelOptions& s, distill::DistillOptions o) {
  return distill::Distiller(models::make_model(t), models::make_model(s), std::move(o));
}

}  // namespace

TEST(Distiller, MlpTotalTermsAndGradientsMatchPyTorch) {
  auto [teacher, student] = golden_mlp_pair();
  distill::DistillOptions o;
  o.alpha = 0.6;
  o.weight_kl = 0.5;
  o.temperature = 3.0;
  o.weight_cosine = 0.25;
  distill::Distiller d(teacher, student, o);
  d->prepare(golden("mlp.x"));
  ASSERT_EQ(d->hidden_pairs().size(), 1u);
  EXPECT_EQ(d->hidden_pairs()[0].projection, "linear");
  // The projection is the Distiller's only parameter set, named after the pair.
  models::load_weights(*d, test::golden_group("mlp.distiller."), "golden projection");
  auto l = d->forward(golden("mlp.x"), golden("mlp.y"));
  auto terms = term_map(l);
  ASSERT_EQ(terms.size(), 4u);
  for (const char* k : {"ce", "kl", "mse.fc0", "cos.fc0"})
    EXPECT_NEAR(terms.at(k), golden_value(std::string("mlp.") + k), 1e-5) << k;
  EXPECT_NEAR(l.total.item<double>(), golden_value("mlp.total"), 1e-5);
  l.total.backward();
  EXPECT_TRUE(torch::allclose(student->named_parameters()["fc0.weight"].grad(), golden("mlp.grad.student.fc0.weight"),
                              1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(d->named_parameters()["proj.fc0.weight"].grad(),
                              golden("mlp.grad.distiller.proj.fc0.weight"), 1e-4, 1e-6));
  for (const auto& p : teacher->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Distiller, DkdIsATermOfItsOwnAddedWithItsWeight) {
  auto [teacher, student] = golden_mlp_pair();
  distill::DistillOptions o;
  o.weight_ce = 0.5;
  o.weight_mse = 0;
  o.weight_dkd = 0.25;
  o.temperature = 3.0;
  o.dkd_alpha = 1.0;
  o.dkd_beta = 6.0;
  distill::Distiller d(teacher, student, o);
  d->prepare(golden("mlp.x"));
  auto l = d->forward(golden("mlp.x"), golden("mlp.y"));
  auto terms = term_map(l);
  ASSERT_EQ(terms.size(), 2u);
  torch::Tensor t_logits;
  {
    torch::NoGradGuard g;
    t_logits = teacher->forward(golden("mlp.x")).logits;
  }
  const auto s_logits = student->forward(golden("mlp.x")).logits;
  EXPECT_NEAR(terms.at("dkd"), distill::dkd_loss(s_logits, t_logits, golden("mlp.y"), 3.0, 1.0, 6.0).item<double>(), 1e-6);
  EXPECT_NEAR(l.total.item<double>(), 0.5 * terms.at("ce") + 0.25 * terms.at("dkd"), 1e-6);
}

namespace {

// On the golden MLP pair with 0.6 CE + 0.4 hidden MSE + 0.5 KL (T=3), labels that differ
// only in how they are read (mixed, smoothed) change the CE term and nothing else: the
// teacher's terms compare outputs on the inputs, whatever the labels.
distill::Distiller three_term_distiller(std::shared_ptr<models::Model> teacher, std::shared_ptr<models::Model> student) {
  distill::DistillOptions o;
  o.alpha = 0.6;
  o.weight_kl = 0.5;
  o.temperature = 3.0;
  distill::Distiller d(std::move(teacher), std::move(student), o);
  d->prepare(golden("mlp.x"));
  return d;
}

void expect_ce_alone_differs(const std::map<std::string, double>& plain, const distill::Losses& l) {
  const auto changed = term_map(l);
  ASSERT_EQ(changed.size(), plain.size());
  EXPECT_NE(changed.at("ce"), plain.at("ce"));
  EXPECT_DOUBLE_EQ(changed.at("kl"), plain.at("kl"));
  EXPECT_DOUBLE_EQ(changed.at("mse.fc0"), plain.at("mse.fc0"));
  EXPECT_NEAR(l.total.item<double>(), 0.6 * changed.at("ce") + 0.4 * changed.at("mse.fc0") + 0.5 * changed.at("kl"),
              1e-6);
}

}  // namespace

TEST(Distiller, MixupMixesTheCeTermAloneAndRefusesDkd) {
  auto [teacher, student] = golden_mlp_pair();
  auto d = three_term_distiller(teacher, student);
  const auto x = golden("mlp.x"), y = golden("mlp.y");
  const auto y_mix = y.flip(0);  // any other label set
  const double lam = 0.35;
  auto plain = term_map(d->forward(x, y));
  auto other = term_map(d->forward(x, y_mix));
  auto l = d->forward(x, data::Labels(y, y_mix, lam));
  EXPECT_NEAR(term_map(l).at("ce"), lam * plain.at("ce") + (1 - lam) * other.at("ce"), 1e-6);
  expect_ce_alone_differs(plain, l);

  distill::DistillOptions k;
  k.weight_dkd = 1.0;
  distill::Distiller with_dkd(teacher, student, k);
  with_dkd->prepare(x);
  EXPECT_NO_THROW(with_dkd->forward(x, y));
  expect_error<ConfigError>([&] { with_dkd->forward(x, data::Labels(y, y_mix, lam)); },
                            {"distill.weights.dkd", "data.mixup"});
}

TEST(Distiller, LabelSmoothingChangesTheCeTermAlone) {
  auto [teacher, student] = golden_mlp_pair();
  auto d = three_term_distiller(teacher, student);
  const auto x = golden("mlp.x"), y = golden("mlp.y");
  auto plain = term_map(d->forward(x, y));
  auto l = d->forward(x, data::Labels(y).smoothed(0.2));
  EXPECT_NEAR(term_map(l).at("ce"), amp::cross_entropy(student->forward(x).logits, y, 0.2).item<double>(), 1e-6);
  expect_ce_alone_differs(plain, l);
}

TEST(Distiller, VitWithAttentionMatchesPyTorch) {
  auto teacher = distill::load_teacher_weights(vit(16, 2, 2), test::golden_group("vit.teacher."), "golden teacher");
  auto so = vit(8, 1, 1);
  so.mlp_ratio = 1.5;
  auto student = models::make_model(so);
  models::load_weights(*student, test::golden_group("vit.student."), "golden student");
  distill::DistillOptions o;
  o.weight_ce = 0.5;
  o.weight_kl = 1.0;
  o.temperature = 2.0;
  o.weight_mse = 0.3;
  o.weight_attention = 2.0;
  o.layers = distill::parse_layer_map(YAML::Node("uniform"));
  distill::Distiller d(teacher, student, o);
  d->prepare(golden("vit.x"));
  ASSERT_EQ(d->hidden_pairs().size(), 1u);
  EXPECT_EQ(d->hidden_pairs()[0].layers.teacher, 1);  // round(1 * 2 / 1) - 1
  ASSERT_EQ(d->attention_pairs().size(), 1u);
  models::load_weights(*d, test::golden_group("vit.distiller."), "golden projection");
  student->eval();  // same as the twin (no dropout either way)
  auto l = d->forward(golden("vit.x"), golden("vit.y"));
  auto terms = term_map(l);
  for (const char* k : {"ce", "kl", "mse.layer0", "attn.0"})
    EXPECT_NEAR(terms.at(k), golden_value(std::string("vit.") + k), 1e-5) << k;
  EXPECT_NEAR(l.total.item<double>(), golden_value("vit.total"), 1e-5);
}

TEST(Distiller, ProjectionShapesForWidthAndChannelMismatch) {
  torch::manual_seed(0);
  distill::DistillOptions o;
  o.layers = distill::parse_layer_map(YAML::Node("uniform"));
  auto d = make(cnn({32, 64}, {512}), cnn({16, 32}, {64}), o);
  d->prepare(torch::randn({3, 1, 28, 28}));
  const auto params = d->named_parameters();
  ASSERT_EQ(params.size(), 6u);
  EXPECT_EQ(params["proj.stage0.weight"].sizes(), torch::IntArrayRef({32, 16, 1, 1}));  // 1x1 conv, student -> teacher
  EXPECT_EQ(params["proj.stage1.weight"].sizes(), torch::IntArrayRef({64, 32, 1, 1}));
  EXPECT_EQ(params["proj.fc0.weight"].sizes(), torch::IntArrayRef({512, 64}));         // linear
  EXPECT_EQ(params["proj.fc0.bias"].sizes(), torch::IntArrayRef({512}));
  EXPECT_EQ(d->hidden_pairs()[0].projection, "conv1x1");
  EXPECT_EQ(d->hidden_pairs()[2].projection, "linear");
  auto l = d->forward(torch::randn({4, 1, 28, 28}), torch::randint(0, 10, {4}));
  auto terms = term_map(l);
  EXPECT_EQ(terms.size(), 4u);  // ce, mse.stage0, mse.stage1, mse.fc0
  EXPECT_TRUE(terms.count("mse.stage1"));
  // Equal widths need no projection.
  auto same = make(cnn({8, 16}, {32}), cnn({8, 16}, {32}), distill::DistillOptions());
  same->prepare(torch::randn({2, 1, 28, 28}));
  EXPECT_TRUE(same->parameters().empty());
  // A second prepare keeps the (trained) projections.
  auto before = params.find("proj.fc0.weight")->clone();
  d->prepare(torch::randn({2, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(d->named_parameters()["proj.fc0.weight"], before));
  EXPECT_EQ(d->named_parameters().size(), 6u);
}

TEST(Distiller, SpatialMismatchIsPooledOrRefused) {
  distill::DistillOptions o;
  o.layers = distill::parse_layer_map(YAML::Load("{stage2: stage1}"));  // student 3x3 map -> teacher 7x7 map
  auto d = make(cnn({8, 16}, {32}), cnn({8, 8, 16}, {32}), o);
  d->prepare(torch::randn({2, 1, 28, 28}));
  EXPECT_TRUE(d->hidden_pairs()[0].pooled);
  EXPECT_TRUE(d->hidden_pairs()[0].projection.empty());
  auto l = d->forward(torch::randn({2, 1, 28, 28}), torch::randint(0, 10, {2}));
  EXPECT_TRUE(std::isfinite(l.total.item<double>()));
  o.spatial = distill::DistillOptions::Spatial::kError;
  auto strict = make(cnn({8, 16}, {32}), cnn({8, 8, 16}, {32}), o);
  expect_error<ConfigError>([&] { strict->prepare(torch::randn({2, 1, 28, 28})); },
                            {"student stage2 [2, 16, 3, 3] -> teacher stage1 [2, 16, 7, 7]", "spatial sizes differ",
                             "distill.spatial=pool"});
}

TEST(Distiller, DryRunNamesEveryMismatchedPairAndTheFix) {
  distill::DistillOptions o;
  o.project = false;
  o.layers = distill::parse_layer_map(YAML::Node("uniform"));
  auto d = make(cnn({32, 64}, {512}), cnn({16, 64}, {64}), o);
  expect_error<ConfigError>([&] { d->prepare(torch::randn({5, 1, 28, 28})); },
                            {"dry run on one batch found 2 mismatched layer pair(s)",
                             "student stage0 [2, 16, 14, 14] -> teacher stage0 [2, 32, 14, 14]: channels differ (16 vs 32)",
                             "student fc0 [2, 64] -> teacher fc0 [2, 512]: widths differ (64 vs 512)",
                             "enable distill.project=true"});
  EXPECT_FALSE(d->prepared());
  expect_error<Error>([&] { d->forward(torch::randn({2, 1, 28, 28}), torch::randint(0, 10, {2})); },
                      {"prepare(sample) must run before the first loss"});

  // A feature map paired with a vector.
  distill::DistillOptions kinds;
  kinds.layers = distill::parse_layer_map(YAML::Load("[[stage1, fc0]]"));
  auto k = make(cnn({8, 16}, {32}), cnn({8, 16}, {32}), kinds);
  expect_error<ConfigError>([&] { k->prepare(torch::randn({2, 1, 28, 28})); },
                            {"student stage1 [2, 16, 7, 7] -> teacher fc0 [2, 32]",
                             "a feature map cannot be matched to a vector", "distill.layers"});

  // Attention maps asked of a CNN.
  distill::DistillOptions att;
  att.weight_attention = 1.0;
  auto a = make(cnn({8, 16}, {32}), cnn({8, 16}, {32}), att);
  expect_error<ConfigError>([&] { a->prepare(torch::randn({2, 1, 28, 28})); },
                            {"distill.weights.attention", "student (cnn) returns no attention maps"});

  // Token counts differ (cls token vs mean pooling).
  distill::DistillOptions tok;
  tok.weight_attention = 1.0;
  auto t = make(vit(16, 2, 2, "cls"), vit(8, 1, 1, "avg"), tok);
  expect_error<ConfigError>([&] { t->prepare(torch::randn({2, 1, 8, 8})); },
                            {"student layer0 [2, 4, 8] -> teacher layer1 [2, 5, 16]: token counts differ (4 vs 5)",
                             "attention student layer0 [2, 1, 4, 4] -> teacher layer1 [2, 2, 5, 5]"});
}

TEST(Distiller, ConstructorChecksInputsAndClasses) {
  distill::DistillOptions o;
  o.weight_kl = 1.0;
  auto t = cnn({8}, {16});
  t.num_classes = 5;
  expect_error<ConfigError>([&] { make(t, cnn({8}, {16}), o); },
                            {"distill.weights", "teacher has 5 classes and the student 10", "kl, reverse_kl"});
  expect_error<ConfigError>([&] { make(mlp({8}, 8), mlp({8}, 28), distill::DistillOptions()); },
                            {"the teacher reads 1x8x8 images, the student 1x28x28"});
  distill::DistillOptions bad;
  bad.alpha = -0.1;
  expect_error<ConfigError>([&] { make(mlp({8}), mlp({8}), bad); }, {"distill.alpha"});
}

TEST(Distiller, TeacherIsFrozenAndStaysInEval) {
  torch::manual_seed(1);
  auto teacher = models::make_model(cnn({8, 16}, {32}));
  for (const auto& p : teacher->parameters()) ASSERT_TRUE(p.requires_grad());
  auto student = models::make_model(cnn({4, 8}, {16}));
  distill::Distiller d(teacher, student, distill::DistillOptions());
  for (const auto& p : teacher->parameters()) EXPECT_FALSE(p.requires_grad());
  d->train(true);
  EXPECT_FALSE(teacher->is_training());
  EXPECT_TRUE(student->is_training());
  d->prepare(torch::randn({2, 1, 28, 28}));
  EXPECT_TRUE(student->is_training());  // the dry run restores the mode
  // The teacher is held, not registered: nothing of it in the Distiller's parameters.
  for (const auto& kv : d->named_parameters()) EXPECT_EQ(kv.key().rfind("proj.fc0.", 0), 0u) << kv.key();
}

TEST(Distiller, TeacherRunsInBf16UnderAutocastCastOnce) {
  torch::manual_seed(2);
  auto teacher = models::make_model(cnn({8, 16}, {32}));
  auto student = models::make_model(cnn({4, 8}, {16}));
  distill::DistillOptions o;
  o.weight_kl = 0.5;
  distill::Distiller d(teacher, student, o);
  d->prepare(torch::randn({2, 1, 28, 28}));
  auto x = torch::randn({4, 1, 28, 28});
  auto y = torch::randint(0, 10, {4});
  const double fp32_total = d->forward(x, y).total.item<double>();
  EXPECT_EQ(d->teacher_dtype(), torch::kFloat);
  distill::Losses l;
  {
    amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
    l = d->forward(x, y);
  }
  EXPECT_EQ(d->teacher_dtype(), torch::kBFloat16);
  auto tp = teacher->named_parameters();
  EXPECT_EQ(tp["stage0.conv0.weight"].scalar_type(), torch::kBFloat16);
  EXPECT_EQ(tp["fc0.weight"].scalar_type(), torch::kBFloat16);
  EXPECT_EQ(tp["stage0.bn0.weight"].scalar_type(), torch::kFloat);  // norm layers keep fp32
  EXPECT_EQ(teacher->named_buffers()["stage0.bn0.running_mean"].scalar_type(), torch::kFloat);
  EXPECT_EQ(student->named_parameters()["fc0.weight"].scalar_type(), torch::kFloat);  // the student is untouched
  EXPECT_EQ(l.total.scalar_type(), torch::kFloat);
  EXPECT_NEAR(l.total.item<double>(), fp32_total, 0.05 * std::abs(fp32_total) + 0.02);
  // Outside autocast the low-precision teacher still runs (under its own autocast).
  auto again = d->forward(x, y);
  EXPECT_TRUE(std::isfinite(again.total.item<double>()));
  l.total.backward();
  for (const auto& p : teacher->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Distiller, LoadTeacherWeightsNamesMissingAndExtraTensors) {
  auto weights = test::golden_group("mlp.teacher.");
  weights.erase("fc1.bias");
  weights["fc9.weight"] = torch::zeros({1});
  expect_error<CheckpointError>([&] { distill::load_teacher_weights(mlp({16, 12}), weights, "teacher.safetensors"); },
                                {"teacher.safetensors", "missing [fc1.bias]", "unexpected [fc9.weight]"});
  auto t = distill::load_teacher_weights(mlp({16, 12}), test::golden_group("mlp.teacher."), "ok");
  EXPECT_FALSE(t->is_training());
  for (const auto& p : t->parameters()) EXPECT_FALSE(p.requires_grad());
}


namespace {

models::ModelOptions gpt(int64_t dim, int64_t depth, int64_t heads) { return test::gpt_options(13, 8, dim, depth, heads, 0); }

}  // namespace

// distill_golden.py's gpt pair: every token-level term, hidden MSE through a projection and
// MiniLM's attention KL, against PyTorch, with the gradients.
TEST(Distiller, GptTokenTermsHiddenAndAttentionKlMatchPyTorch) {
  auto teacher = distill::load_teacher_weights(gpt(16, 2, 4), test::golden_group("gpt.teacher."), "golden teacher");
  auto student = models::make_model(gpt(8, 1, 2));
  models::load_weights(*student, test::golden_group("gpt.student."), "golden student");
  distill::DistillOptions o;
  o.weight_ce = 0.5;
  o.weight_kl = 0.5;
  o.weight_reverse_kl = 0.25;
  o.weight_gjs = 0.25;
  o.gjs_beta = 0.3;
  o.temperature = 2.0;
  o.weight_mse = 0.3;
  o.weight_attention = 1.0;
  o.attention_loss = distill::DistillOptions::AttentionLoss::kKl;
  o.layers = distill::parse_layer_map(YAML::Node("uniform"));
  distill::Distiller d(teacher, student, o);
  EXPECT_TRUE(teacher->keep_attention() && student->keep_attention()) << "an attention weight asks both for their maps";
  d->prepare(golden("gpt.x"));
  ASSERT_EQ(d->hidden_pairs().size(), 1u);
  EXPECT_EQ(d->hidden_pairs()[0].projection, "linear");
  models::load_weights(*d, test::golden_group("gpt.distiller."), "golden projection");
  const std::vector<std::string> expected_terms = {"ce", "kl", "reverse_kl", "gjs", "mse.layer0", "attn.0"};
  EXPECT_EQ(d->term_names(), expected_terms);
  auto l = d->forward(golden("gpt.x"), golden("gpt.y"));
  EXPECT_EQ(l.logits.sizes(), (std::vector<int64_t>{2, 6, 13}));
  auto terms = term_map(l);
  for (const auto& k : expected_terms) EXPECT_NEAR(terms.at(k), golden_value("gpt." + k), 1e-5) << k;
  EXPECT_NEAR(l.total.item<double>(), golden_value("gpt.total"), 1e-5);
  l.total.backward();
  EXPECT_TRUE(torch::allclose(student->named_parameters()["transformer.h.0.attn.c_attn.weight"].grad(),
                              golden("gpt.grad.student.transformer.h.0.attn.c_attn.weight"), 1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(d->named_parameters()["proj.layer0.weight"].grad(),
                              golden("gpt.grad.distiller.proj.layer0.weight"), 1e-4, 1e-6));
}

TEST(Distiller, LanguageModelsMustReadTheSameTokens) {
  distill::DistillOptions o;
  o.weight_kl = 1.0;
  auto other_vocab = gpt(8, 1, 2);
  other_vocab.vocab_size = 50257;
  expect_error<ConfigError>([&] { make(other_vocab, gpt(8, 1, 2), o); },
                            {"distill.teacher", "teacher's vocabulary has 50257 tokens", "the student's 13"});
  auto short_teacher = gpt(16, 1, 2);
  short_teacher.context = 4;
  expect_error<ConfigError>([&] { make(short_teacher, gpt(8, 1, 2), o); },
                            {"teacher reads at most 4 tokens", "student's windows have 8", "model.context <= 4"});
  expect_error<ConfigError>([&] { make(gpt(8, 1, 2), mlp({8}), o); },
                            {"the teacher is a language model (gpt) and the student an image model (mlp"});
  // A longer teacher context is fine: it reads the student's windows.
  auto long_teacher = gpt(16, 1, 2);
  long_teacher.context = 16;
  EXPECT_NO_THROW(make(long_teacher, gpt(8, 1, 2), o));
}
