// Layer-map arithmetic and parsing.
#include <gtest/gtest.h>

#include "core/error.h"
#include "distill/layer_map.h"
#include "tests/distill/helpers.h"

using namespace retort;

namespace {

std::vector<int64_t> uniform(int64_t ls, int64_t lt) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < ls; ++i) out.push_back(distill::uniform_teacher_layer(i, ls, lt));
  return out;
}

std::vector<std::pair<int64_t, int64_t>> idx(const std::vector<distill::LayerPair>& pairs) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& p : pairs) out.emplace_back(p.student, p.teacher);
  return out;
}

/// A map as the config reader gives it (parsed, its problems prefixed with the key), then
/// resolved against the layer names.
std::vector<distill::LayerPair> resolve(const YAML::Node& node, const std::vector<std::string>& student,
                                        const std::vector<std::string>& teacher, const std::string& key) {
  distill::LayerMap map;
  try {
    map = distill::parse_layer_map(node);
  } catch (const ConfigError& e) {
    throw ConfigError(key + ": " + e.what());
  }
  return distill::resolve_layer_map(map, student, teacher, key);
}

using Pairs = std::vector<std::pair<int64_t, int64_t>>;
const std::vector<std::string> kStudent = {"stage0", "stage1", "fc0"};
const std::vector<std::string> kTeacher = {"stage0", "stage1", "stage2", "fc0", "fc1"};

}  // namespace

TEST(LayerMap, UniformFormulaForSeveralDepths) {
  // round((i+1) * Lt / Ls) - 1, halves up.
  EXPECT_EQ(uniform(1, 4), (std::vector<int64_t>{3}));
  EXPECT_EQ(uniform(2, 4), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(uniform(3, 12), (std::vector<int64_t>{3, 7, 11}));  // TinyBERT 4-of-12 style, every 4th
  EXPECT_EQ(uniform(4, 6), (std::vector<int64_t>{1, 2, 4, 5}));   // 1.5 -> 2, 4.5 -> 5
  EXPECT_EQ(uniform(2, 3), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(uniform(3, 3), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(uniform(6, 4), (std::vector<int64_t>{0, 0, 1, 2, 2, 3}));
  EXPECT_EQ(uniform(4, 2), (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(uniform(3, 1), (std::vector<int64_t>{0, 0, 0}));  // clamped at 0
  // The last student layer always learns from the last teacher layer.
  for (int64_t ls = 1; ls <= 8; ++ls)
    for (int64_t lt = 1; lt <= 13; ++lt) EXPECT_EQ(distill::uniform_teacher_layer(ls - 1, ls, lt), lt - 1);
  EXPECT_THROW(distill::uniform_teacher_layer(3, 3, 4), Error);
}

TEST(LayerMap, LastAndUniform) {
  EXPECT_EQ(idx(resolve(YAML::Node("last"), kStudent, kTeacher, "k")), (Pairs{{2, 4}}));
  EXPECT_EQ(idx(resolve(YAML::Node(), kStudent, kTeacher, "k")), (Pairs{{2, 4}}));  // default
  EXPECT_EQ(idx(resolve(YAML::Node("uniform"), kStudent, kTeacher, "k")), (Pairs{{0, 1}, {1, 2}, {2, 4}}));
  auto p = resolve(YAML::Node("last"), kStudent, kTeacher, "k");
  EXPECT_EQ(p[0].name, "fc0");
}

TEST(LayerMap, ExplicitPairsByIndexNameAndNegativeIndex) {
  EXPECT_EQ(idx(resolve(YAML::Load("[[0, 1], [1, 3]]"), kStudent, kTeacher, "k")), (Pairs{{0, 1}, {1, 3}}));
  EXPECT_EQ(idx(resolve(YAML::Load("[[-1, -1], [0, -5]]"), kStudent, kTeacher, "k")), (Pairs{{2, 4}, {0, 0}}));
  EXPECT_EQ(idx(resolve(YAML::Load("[[stage1, stage2], [fc0, 4]]"), kStudent, kTeacher, "k")),
            (Pairs{{1, 2}, {2, 4}}));
  EXPECT_EQ(idx(resolve(YAML::Load("{stage0: stage1, fc0: fc1}"), kStudent, kTeacher, "k")),
            (Pairs{{0, 1}, {2, 4}}));
  // The forms an override on the command line tends to produce.
  EXPECT_EQ(idx(resolve(YAML::Load("{stage0:stage1}"), kStudent, kTeacher, "k")), (Pairs{{0, 1}}));
  EXPECT_EQ(idx(resolve(YAML::Load("['stage0: stage2', '1:3']"), kStudent, kTeacher, "k")),
            (Pairs{{0, 2}, {1, 3}}));
  EXPECT_EQ(idx(resolve(YAML::Node("fc0:fc1"), kStudent, kTeacher, "k")), (Pairs{{2, 4}}));
}

TEST(LayerMap, TermNamesAreUniqueWhenAStudentLayerRepeats) {
  auto p = resolve(YAML::Load("[[fc0, fc0], [fc0, fc1], [stage0, stage0]]"), kStudent, kTeacher, "k");
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].name, "fc0-fc0");
  EXPECT_EQ(p[1].name, "fc0-fc1");
  EXPECT_EQ(p[2].name, "stage0");
}

TEST(LayerMap, ErrorsNameTheKeyTheEntryAndTheChoices) {
  using test::expect_error;
  expect_error<ConfigError>([] { resolve(YAML::Node("every"), kStudent, kTeacher, "distill.layers"); },
                            {"distill.layers: unknown layer map 'every'", "last, uniform"});
  expect_error<ConfigError>(
      [] { resolve(YAML::Load("[[fc9, fc0]]"), kStudent, kTeacher, "distill.layers"); },
      {"distill.layers", "student has no layer named 'fc9'", "stage0, stage1, fc0"});
  expect_error<ConfigError>([] { resolve(YAML::Load("[[0, 5]]"), kStudent, kTeacher, "distill.layers"); },
                            {"teacher layer 5 is out of range", "has 5", "indices 0..4"});
  expect_error<ConfigError>([] { resolve(YAML::Load("[[0, -6]]"), kStudent, kTeacher, "distill.layers"); },
                            {"teacher layer -6 is out of range"});
  expect_error<ConfigError>([] { resolve(YAML::Load("[]"), kStudent, kTeacher, "distill.layers"); },
                            {"distill.layers: the list of layer pairs is empty"});
  expect_error<ConfigError>([] { resolve(YAML::Load("[[0, 1, 2]]"), kStudent, kTeacher, "distill.layers"); },
                            {"entry 0 ([0, 1, 2]) is not a [student, teacher] pair"});
  expect_error<ConfigError>([] { resolve(YAML::Load("[stage0]"), kStudent, kTeacher, "distill.layers"); },
                            {"entry 'stage0' is not a pair"});
  expect_error<ConfigError>(
      [] { resolve(YAML::Load("[[0, 1], [stage0, stage1]]"), kStudent, kTeacher, "distill.layers"); },
      {"the pair stage0 -> stage1 is listed twice"});
  expect_error<ConfigError>([] { resolve(YAML::Node("last"), {}, kTeacher, "distill.layers"); },
                            {"the student has no layers to map"});
  expect_error<ConfigError>([] { resolve(YAML::Load("[[[0], 1]]"), kStudent, kTeacher, "distill.layers"); },
                            {"expected a layer index or name, got [0]"});
}
