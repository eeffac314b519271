#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "models/models.h"
#include "tests/common/expect.h"
#include "tests/common/temp_dir.h"

using retort::test::TempDir;

namespace fs = std::filesystem;
using namespace retort;
using namespace retort::models;
using test::expect_error;

namespace {

ModelOptions teacher() {
  ModelOptions o;
  o.channels = {32, 64};
  o.convs_per_stage = 2;
  o.hidden = {512};
  return o;
}

ModelOptions student() {
  ModelOptions o;
  o.channels = {16, 32};
  o.convs_per_stage = 1;
  o.hidden = {64};
  return o;
}

}  // namespace

TEST(Cnn, ShapesOfLogitsAndHiddenStates) {
  auto m = make_model(teacher());
  auto out = m->forward(torch::randn({3, 1, 28, 28}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{3, 10}));
  ASSERT_EQ(out.hidden.size(), 3u);
  EXPECT_EQ(out.hidden[0].sizes(), (std::vector<int64_t>{3, 32, 14, 14}));
  EXPECT_EQ(out.hidden[1].sizes(), (std::vector<int64_t>{3, 64, 7, 7}));
  EXPECT_EQ(out.hidden[2].sizes(), (std::vector<int64_t>{3, 512}));
  EXPECT_EQ(m->hidden_names(), (std::vector<std::string>{"stage0", "stage1", "fc0"}));
  EXPECT_EQ(m->hidden_kinds(), (std::vector<std::string>{"map", "map", "vector"}));
}

TEST(Cnn, ParameterCountsMatchTheArchitecture) {
  auto t = make_model(teacher());
  // conv 1->32 (no bias with BN) + bn, 32->32 + bn, 32->64 + bn, 64->64 + bn, fc 3136->512, head 512->10
  const int64_t expected = 9 * 32 + 64 + 9 * 32 * 32 + 64 + 9 * 32 * 64 + 128 + 9 * 64 * 64 + 128 +
                           (64 * 7 * 7 * 512 + 512) + (512 * 10 + 10);
  EXPECT_EQ(count_parameters(*t), expected);
  auto s = make_model(student());
  EXPECT_LE(count_parameters(*s) * 10, count_parameters(*t)) << "the student recipe must stay under 1/10";
}

TEST(Cnn, StateNamesFollowPyTorchConventions) {
  auto m = make_model(teacher());
  std::vector<std::string> names;
  for (auto& kv : named_state(*m)) names.push_back(kv.first);
  for (const char* want : {"stage0.conv0.weight", "stage0.bn0.weight", "stage0.bn0.running_mean",
                           "stage0.bn0.num_batches_tracked", "stage1.conv1.weight", "fc0.weight", "head.bias"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
}

TEST(Cnn, AvgPoolAndNoBatchNorm) {
  auto o = student();
  o.pool = "avg";
  o.batch_norm = false;
  auto m = make_model(o);
  auto out = m->forward(torch::randn({2, 1, 28, 28}));
  EXPECT_EQ(out.hidden.back().sizes(), (std::vector<int64_t>{2, 64}));
  EXPECT_TRUE(m->named_parameters().contains("stage0.conv0.bias"));
}

TEST(Cnn, BadOptionsAreConfigErrors) {
  auto o = student();
  o.channels = {16, 32, 64, 64, 64, 64};  // pools 28px below 1px
  EXPECT_THROW(make_model(o), ConfigError);
  o = student();
  o.pool = "max";
  try {
    make_model(o);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.pool"), std::string::npos);
  }
}

TEST(Registry, UnknownNameListsKnownOnes) {
  ModelOptions o;
  o.name = "resnet";
  try {
    make_model(o);
    FAIL();
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("model.name"), std::string::npos);
    EXPECT_NE(msg.find("cnn"), std::string::npos);
    EXPECT_NE(msg.find("mlp"), std::string::npos);
  }
}

TEST(Registry, ReadModelOptionsNamesTheFullKey) {
  auto o = read_model_options(YAML::Load("{name: cnn, channels: [8, 16], hidden: [32]}"), "distill.teacher.model");
  EXPECT_EQ(o.channels, (std::vector<int64_t>{8, 16}));
  expect_error<ConfigError>(
      [] { read_model_options(YAML::Load("{name: cnn, chanels: [8]}"), "distill.teacher.model"); },
      {"distill.teacher.model.chanels"});
  expect_error<ConfigError>([] { read_model_options(YAML::Load("[1, 2]"), "distill.teacher.model"); },
                            {"distill.teacher.model: expected a map of model keys", "list"});
}

TEST(Mlp, Shapes) {
  ModelOptions o;
  o.name = "mlp";
  o.hidden = {32, 16};
  auto m = make_model(o);
  auto out = m->forward(torch::randn({4, 1, 28, 28}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{4, 10}));
  EXPECT_EQ(out.hidden.size(), 2u);
  EXPECT_EQ(count_parameters(*m), 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10);
}

TEST(Safetensors, RoundTripEveryDtype) {
  std::map<std::string, torch::Tensor> t = {
      {"f32", torch::randn({2, 3})},
      {"f64", torch::randn({4}, torch::kFloat64)},
      {"bf16", torch::randn({3, 1}).to(torch::kBFloat16)},
      {"f16", torch::randn({5}).to(torch::kFloat16)},
      {"i64", torch::arange(6, torch::kInt64).reshape({2, 3})},
      {"u8", torch::randint(0, 255, {7}, torch::kUInt8)},
      {"b", torch::tensor({true, false})},
      {"scalar", torch::tensor(3.5)},
      {"empty", torch::zeros({0, 4})},
  };
  auto f = parse_safetensors(safetensors_bytes(t, {{"k", "v"}}), "mem");
  EXPECT_EQ(f.metadata.at("k"), "v");
  ASSERT_EQ(f.tensors.size(), t.size());
  for (auto& [name, x] : t) {
    EXPECT_EQ(f.tensors.at(name).scalar_type(), x.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(f.tensors.at(name), x)) << name;
  }
}

TEST(Safetensors, LayoutIsTheStandardOne) {
  auto bytes = safetensors_bytes({{"w", torch::ones({2})}});
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  std::string header = bytes.substr(8, n);
  EXPECT_NE(header.find("\"w\":{\"data_offsets\":[0,8],\"dtype\":\"F32\",\"shape\":[2]}"), std::string::npos) << header;
  EXPECT_EQ(bytes.size(), 8 + n + 8);
}

TEST(Safetensors, CorruptInputIsRefusedWithTheFileNamed) {
  auto good = safetensors_bytes({{"w", torch::ones({4})}, {"v", torch::zeros({2})}});
  auto expect_bad = [](const std::string& bytes, const std::string& needle) {
    try {
      parse_safetensors(bytes, "model.safetensors");
      FAIL() << "accepted: " << needle;
    } catch (const CheckpointError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  expect_bad(good.substr(0, 5), "shorter than its 8-byte header");
  expect_bad(good.substr(0, good.size() - 4), "truncated");
  expect_bad(good + "xxxx", "trailing bytes");
  std::string huge = good;
  huge[7] = 0x7f;
  expect_bad(huge, "exceeds the file");
  std::string garbled = good;
  garbled[9] = '#';
  expect_bad(garbled, "not valid JSON");
}

TEST(Weights, LoadNamesEveryMissingExtraAndMisshapedTensor) {
  auto m = make_model(student());
  auto w = weights_of(*m);
  w.erase("head.bias");
  w["bogus"] = torch::zeros({1});
  w["fc0.weight"] = torch::zeros({3, 3});
  auto before = weights_of(*m).at("stage0.conv0.weight").clone();
  try {
    load_weights(*m, w, "teacher.safetensors");
    FAIL();
  } catch (const CheckpointError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("teacher.safetensors"), std::string::npos);
    EXPECT_NE(msg.find("missing [head.bias]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected [bogus]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fc0.weight"), std::string::npos) << msg;
  }
  // nothing was copied
  EXPECT_TRUE(torch::equal(weights_of(*m).at("stage0.conv0.weight"), before));
}

TEST(Weights, SaveLoadRoundTripThroughAFile) {
  auto a = make_model(student());
  auto b = make_model(student());
  const TempDir dir("models");
  const auto path = dir / "w.safetensors";
  save_safetensors(path, weights_of(*a));
  load_weights(*b, load_safetensors(path).tensors, path.string());
  a->eval();
  b->eval();
  auto x = torch::randn({2, 1, 28, 28});
  EXPECT_TRUE(torch::equal(a->forward(x).logits, b->forward(x).logits));
  fs::remove(path);
}
