// DistillOptions: weights from alpha and explicit weights, validation, config keys.
#include <gtest/gtest.h>

#include <cmath>

#include "config/config.h"
#include "core/error.h"
#include "distill/options.h"
#include "tests/distill/helpers.h"

using namespace retort;
using distill::DistillOptions;

TEST(DistillOptions, DefaultIsTheClassicAlphaMix) {
  DistillOptions o;
  o.validate();
  auto w = o.loss_weights();
  EXPECT_DOUBLE_EQ(w.ce, 0.7);
  EXPECT_DOUBLE_EQ(w.mse, 0.3);
  EXPECT_EQ(w.kl, 0.0);
  EXPECT_EQ(w.cosine, 0.0);
  EXPECT_EQ(w.attention, 0.0);
}

TEST(DistillOptions, AlphaSetsCeAndMseUnlessWeightsAreGiven) {
  DistillOptions o;
  o.alpha = 0.25;
  EXPECT_DOUBLE_EQ(o.loss_weights().ce, 0.25);
  EXPECT_DOUBLE_EQ(o.loss_weights().mse, 0.75);
  o.weight_mse = 0.0;  // explicit weight wins, term by term
  o.weight_kl = 0.9;
  auto w = o.loss_weights();
  EXPECT_DOUBLE_EQ(w.ce, 0.25);
  EXPECT_EQ(w.mse, 0.0);
  EXPECT_DOUBLE_EQ(w.kl, 0.9);
}

TEST(DistillOptions, BadValuesNameTheKey) {
  using test::expect_error;
  DistillOptions o;
  o.alpha = 1.5;
  expect_error<ConfigError>([&] { o.validate(); }, {"distill.alpha", "[0, 1]", "1.5"});
  o = DistillOptions();
  o.temperature = 0;
  expect_error<ConfigError>([&] { o.validate(); }, {"distill.temperature", "> 0"});
  o = DistillOptions();
  o.weight_kl = -1;
  expect_error<ConfigError>([&] { o.validate(); }, {"distill.weights.kl", ">= 0", "-1"});
  o = DistillOptions();
  o.weight_ce = 0;
  o.weight_mse = 0;
  expect_error<ConfigError>([&] { o.validate(); }, {"distill.weights: every loss weight is 0"});
  o = DistillOptions();
  o.weight_dkd = -0.5;
  expect_error<ConfigError>([&] { o.validate(); }, {"distill.weights.dkd", ">= 0", "-0.5"});
  o = DistillOptions();
  o.dkd_beta = std::nan("");
  expect_error<ConfigError>([&] { o.validate(); }, {"distill.dkd.beta", ">= 0", "nan"});
  o = DistillOptions();
  o.weight_ce = 0;
  o.weight_mse = 0;
  o.weight_dkd = 1;  // DKD alone is a loss
  EXPECT_NO_THROW(o.validate());
  EXPECT_EQ(o.loss_weights().dkd, 1.0);
}

TEST(DistillOptions, TeacherSourceMustBeExactlyOne) {
  using test::expect_error;
  DistillOptions o;
  expect_error<ConfigError>([&] { o.validate_teacher_source(); }, {"distill.teacher: no teacher given", "checkpoint"});
  o.teacher_checkpoint = "runs/t";
  o.validate_teacher_source();
  o.teacher_weights = "t.safetensors";
  expect_error<ConfigError>([&] { o.validate_teacher_source(); }, {"both checkpoint and weights are set"});
  o.teacher_checkpoint.clear();
  expect_error<ConfigError>([&] { o.validate_teacher_source(); }, {"distill.teacher.model: required", "t.safetensors"});
  o.teacher_model = models::read_model_options(YAML::Load("{name: mlp}"), "distill.teacher.model");
  o.validate_teacher_source();
  o.teacher_weights.clear();
  o.teacher_checkpoint = "runs/t";
  expect_error<ConfigError>([&] { o.validate_teacher_source(); }, {"distill.teacher.model: only used with"});
}

TEST(DistillOptions, ReadFromARecipeSection) {
  auto tree = YAML::Load(R"(
distill:
  alpha: 0.5
  temperature: 2.0
  weights: {kl: 0.4, cosine: 0.1, dkd: 0.2}
  dkd: {alpha: 0.5, beta: 6}
  layers: [[0, 1], [stage1, stage2]]
  project: false
  spatial: error
  teacher:
    checkpoint: outputs/teacher
)");
  config::Reader reader(tree);
  auto o = reader.section<DistillOptions>("distill");
  reader.finish();
  EXPECT_EQ(o.alpha, 0.5);
  EXPECT_EQ(o.temperature, 2.0);
  EXPECT_EQ(o.weight_kl.value_or(-1), 0.4);
  EXPECT_EQ(o.weight_cosine.value_or(-1), 0.1);
  EXPECT_EQ(o.weight_dkd.value_or(-1), 0.2);
  EXPECT_EQ(o.dkd_alpha, 0.5);
  EXPECT_EQ(o.dkd_beta, 6.0);
  EXPECT_FALSE(o.weight_ce.has_value());
  ASSERT_EQ(o.layers.form, distill::LayerMap::Form::kPairs);
  ASSERT_EQ(o.layers.pairs.size(), 2u);
  EXPECT_EQ(o.layers.pairs[1], (std::pair<std::string, std::string>{"stage1", "stage2"}));
  EXPECT_FALSE(o.project);
  EXPECT_EQ(o.spatial, DistillOptions::Spatial::kError);
  EXPECT_EQ(o.teacher_checkpoint, "outputs/teacher");
  // Defaults when the section is absent.
  config::Reader empty(YAML::Load("{}"));
  auto d = empty.section<DistillOptions>("distill");
  EXPECT_EQ(d.layers.form, distill::LayerMap::Form::kLast);
  EXPECT_EQ(d.attention_layers.form, distill::LayerMap::Form::kUniform);
  EXPECT_FALSE(d.teacher_model.has_value());
  EXPECT_EQ(d.dkd_alpha, 1.0);  // the DKD paper's defaults
  EXPECT_EQ(d.dkd_beta, 8.0);
  EXPECT_EQ(d.loss_weights().dkd, 0.0);
}

TEST(DistillOptions, UnknownAndOutOfRangeKeysAreReported) {
  config::Reader reader(YAML::Load("distill: {alpah: 0.5, temperature: -1, weights: {kl: -2}}"));
  reader.section<DistillOptions>("distill");
  test::expect_error<ConfigError>([&] { reader.finish(); },
                                  {"distill.alpah", "distill.temperature", "distill.weights.kl"});
}

// The free-form values are typed when the config is read: a bad layer map, spatial mode or
// teacher model is reported with the others, naming its key.
TEST(DistillOptions, LayerMapsSpatialAndTeacherModelAreTypedWhenRead) {
  config::Reader reader(YAML::Load(
      "distill: {layers: every, attention_layers: [], spatial: crop, teacher: {model: {name: mlp, hiden: [8]}}}"));
  reader.section<DistillOptions>("distill");
  test::expect_error<ConfigError>([&] { reader.finish(); },
                                  {"distill.layers: unknown layer map 'every'", "distill.attention_layers: the list of layer pairs is empty",
                                   "distill.spatial: must be one of: pool, error; got 'crop'", "distill.teacher.model", "hiden"});
  config::Reader good(YAML::Load("distill: {teacher: {model: {name: mlp, hidden: [8]}}}"));
  const auto o = good.section<DistillOptions>("distill");
  good.finish();
  ASSERT_TRUE(o.teacher_model.has_value());
  EXPECT_EQ(o.teacher_model->name, "mlp");
  EXPECT_EQ(o.teacher_model->hidden, (std::vector<int64_t>{8}));
  EXPECT_FALSE(config::is_default(o));
  EXPECT_TRUE(config::is_default(DistillOptions()));
}
