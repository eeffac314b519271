// Each loss term against PyTorch (bench/reference/distill_golden.py).
#include <gtest/gtest.h>

#include <sstream>

#include "amp/autocast.h"
#include "core/error.h"
#include "distill/losses.h"
#include "tests/distill/helpers.h"

using namespace retort;
using retort::test::golden;
using retort::test::golden_value;

namespace {
constexpr double kTol = 1e-5;
}

TEST(Losses, CrossEntropyMatchesPyTorch) {
  auto ce = distill::ce_loss(golden("logits_s"), golden("labels"));
  EXPECT_NEAR(ce.item<double>(), golden_value("ce"), kTol);
}

TEST(Losses, KlWithTemperatureMatchesPyTorch) {
  for (double t : {1.0, 2.0, 4.0}) {
    auto kl = distill::kl_loss(golden("logits_s"), golden("logits_t"), t);
    const std::string key = "kl_T" + std::to_string(static_cast<int>(t));
    EXPECT_NEAR(kl.item<double>(), golden_value(key), kTol) << key;
  }
  // Same logits: no divergence at any temperature.
  EXPECT_NEAR(distill::kl_loss(golden("logits_s"), golden("logits_s"), 3.0).item<double>(), 0.0, 1e-6);
}

// DKD is checked against the identity it rests on rather than against a second
// implementation: per row, classic KD = TCKD + (1 - p_teacher(label)) * NCKD (Zhao et al.,
// eq. 5), with KL itself checked against PyTorch above.
TEST(Losses, DkdDecomposesTheClassicKl) {
  const auto s = golden("logits_s"), t = golden("logits_t"), y = golden("labels");
  for (double temp : {1.0, 2.0, 4.0}) {
    const auto p_label = torch::softmax(t / temp, 1).gather(1, y.unsqueeze(1)).squeeze(1);
    for (int64_t i = 0; i < s.size(0); ++i) {
      const auto si = s.slice(0, i, i + 1), ti = t.slice(0, i, i + 1), yi = y.slice(0, i, i + 1);
      const double kl = distill::kl_loss(si, ti, temp).item<double>();
      const double tckd = distill::dkd_loss(si, ti, yi, temp, 1.0, 0.0).item<double>();
      const double nckd = distill::dkd_loss(si, ti, yi, temp, 0.0, 1.0).item<double>();
      EXPECT_NEAR(kl, tckd + (1.0 - p_label[i].item<double>()) * nckd, 1e-5) << "T " << temp << ", row " << i;
      EXPECT_GE(tckd, -1e-7);
      EXPECT_GE(nckd, -1e-7);
    }
    // Linear in its two weights, a batch mean over rows.
    const double a = distill::dkd_loss(s, t, y, temp, 1.0, 0.0).item<double>();
    const double b = distill::dkd_loss(s, t, y, temp, 0.0, 1.0).item<double>();
    EXPECT_NEAR(distill::dkd_loss(s, t, y, temp, 2.0, 3.0).item<double>(), 2 * a + 3 * b, 1e-5);
  }
}

TEST(Losses, DkdNonTargetPartIgnoresTheLabelsLogitAndVanishesOnTheTeacher) {
  const auto s = golden("logits_s"), t = golden("logits_t"), y = golden("labels");
  const double nckd = distill::dkd_loss(s, t, y, 2.0, 0.0, 1.0).item<double>();
  auto moved = s.clone();
  moved.scatter_add_(1, y.unsqueeze(1), torch::full({s.size(0), 1}, 5.0));  // the label's logit only
  EXPECT_NEAR(distill::dkd_loss(moved, t, y, 2.0, 0.0, 1.0).item<double>(), nckd, 1e-5);
  EXPECT_GT(distill::dkd_loss(moved, t, y, 2.0, 1.0, 0.0).item<double>(),
            distill::dkd_loss(s, t, y, 2.0, 1.0, 0.0).item<double>() - 1e-9);  // TCKD does see it
  EXPECT_NEAR(distill::dkd_loss(t, t, y, 2.0, 1.0, 8.0).item<double>(), 0.0, 1e-6);
  // Its gradient reaches the student and is finite (the masked label column included).
  auto leaf = s.clone().requires_grad_(true);
  distill::dkd_loss(leaf, t, y, 4.0, 1.0, 8.0).backward();
  EXPECT_TRUE(torch::isfinite(leaf.grad()).all().item<bool>());
  EXPECT_GT(leaf.grad().abs().sum().item<double>(), 0.0);
}

TEST(Losses, DkdRejectsBadShapesAndComputesInFp32) {
  test::expect_error<Error>([] { distill::dkd_loss(torch::rand({4, 3}), torch::rand({4, 3}), torch::zeros({3}, torch::kLong), 2, 1, 8); },
                            {"dkd_loss", "[4, 3]", "[3]"});
  test::expect_error<Error>([] { distill::dkd_loss(torch::rand({4, 1}), torch::rand({4, 1}), torch::zeros({4}, torch::kLong), 2, 1, 8); },
                            {"C >= 2"});
  // Token rows: [B, T, C] logits on [B, T] labels are the rows of their flattening.
  const auto s = golden("tok_logits_s"), t = golden("tok_logits_t");
  const auto y = torch::arange(10, torch::kLong).remainder(11).reshape({2, 5});
  EXPECT_NEAR(distill::dkd_loss(s, t, y, 2, 1, 8).item<double>(),
              distill::dkd_loss(s.flatten(0, 1), t.flatten(0, 1), y.flatten(), 2, 1, 8).item<double>(), 1e-6);
  test::expect_error<Error>([&] { distill::dkd_loss(s, t, y.flatten(), 2, 1, 8); }, {"dkd_loss", "[2, 5, 11]", "[10]"});
  amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
  const auto d = distill::dkd_loss(golden("logits_s").to(torch::kBFloat16), golden("logits_t"), golden("labels"), 2.0, 1.0, 8.0);
  EXPECT_EQ(d.scalar_type(), torch::kFloat);
}

TEST(Losses, MseMatchesPyTorch) {
  EXPECT_NEAR(distill::hidden_mse(golden("vec_s"), golden("vec_t")).item<double>(), golden_value("mse_vec"), kTol);
  EXPECT_NEAR(distill::hidden_mse(golden("map_s"), golden("map_t")).item<double>(), golden_value("mse_map"), kTol);
}

TEST(Losses, CosineMatchesPyTorch) {
  EXPECT_NEAR(distill::hidden_cosine(golden("vec_s"), golden("vec_t")).item<double>(), golden_value("cos_vec"), kTol);
  EXPECT_NEAR(distill::hidden_cosine(golden("map_s"), golden("map_t")).item<double>(), golden_value("cos_map"), kTol);
  // Tokens [B, T, D] are compared token by token.
  EXPECT_NEAR(distill::hidden_cosine(golden("tok_s"), golden("tok_t")).item<double>(), golden_value("cos_tok"), kTol);
  // Parallel vectors of different length: no loss.
  auto v = golden("vec_s");
  EXPECT_NEAR(distill::hidden_cosine(v, 3 * v).item<double>(), 0.0, 1e-6);
}

TEST(Losses, AttentionMseMatchesPyTorch) {
  EXPECT_NEAR(distill::attention_mse(golden("att_s"), golden("att_t")).item<double>(),
              golden_value("attn_same_heads"), kTol);
  // 2 student heads vs 4 teacher heads: head-averaged maps.
  EXPECT_NEAR(distill::attention_mse(golden("att_s"), golden("att_t4")).item<double>(),
              golden_value("attn_diff_heads"), kTol);
}

TEST(Losses, AttentionMseRejectsDifferentTokenCounts) {
  test::expect_error<Error>([] { distill::attention_mse(torch::rand({2, 2, 5, 5}), torch::rand({2, 2, 4, 4})); },
                            {"attention maps [2, 2, 5, 5] and [2, 2, 4, 4]", "equal B and T"});
}

TEST(Losses, MatchSpatialPoolsTheLargerMapLikePyTorch) {
  auto [s, t] = distill::match_spatial(golden("big_map"), golden("small_map"));
  EXPECT_EQ(s.sizes(), torch::IntArrayRef({2, 3, 3, 6}));
  EXPECT_TRUE(torch::allclose(s, golden("pooled_big"), 1e-6, 1e-6));
  EXPECT_TRUE(t.is_same(golden("small_map")));  // the smaller map is left alone
  // Either side may be the larger one.
  auto [s2, t2] = distill::match_spatial(golden("small_map"), golden("big_map"));
  EXPECT_TRUE(torch::allclose(t2, golden("pooled_big"), 1e-6, 1e-6));
  test::expect_error<Error>([] { distill::match_spatial(torch::rand({2, 3}), torch::rand({2, 3, 4, 4})); },
                            {"expected feature maps [B, C, H, W]", "[2, 3]"});
}

TEST(Losses, MismatchedShapesAreNamed) {
  test::expect_error<Error>([] { distill::hidden_mse(torch::rand({2, 3}), torch::rand({2, 4})); },
                            {"[2, 3]", "[2, 4]", "same shape"});
}

TEST(Losses, TermsComputeInFp32UnderBf16Autocast) {
  amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
  auto kl = distill::kl_loss(golden("logits_s").to(torch::kBFloat16), golden("logits_t"), 2.0);
  EXPECT_EQ(kl.scalar_type(), torch::kFloat);
  auto mse = distill::hidden_mse(golden("vec_s").to(torch::kBFloat16), golden("vec_t"));
  EXPECT_EQ(mse.scalar_type(), torch::kFloat);
  EXPECT_NEAR(mse.item<double>(), golden_value("mse_vec"), 2e-2);
}

// --- Token-level divergences (language-model distillation) ----------------------------------

namespace {

struct TokenCase {
  const char* kind;
  distill::Divergence divergence;
  double param;
};

const TokenCase kTokenCases[] = {
    {"kl", distill::Divergence::kForwardKl, 0.0},      {"reverse_kl", distill::Divergence::kReverseKl, 0.0},
    {"skew_kl", distill::Divergence::kSkewKl, 0.1},    {"skew_kl", distill::Divergence::kSkewKl, 0.5},
    {"gjs", distill::Divergence::kGjs, 0.5},           {"gjs", distill::Divergence::kGjs, 0.0},
    {"gjs", distill::Divergence::kGjs, 1.0},           {"gjs", distill::Divergence::kGjs, 0.9},
};

std::string case_key(const TokenCase& c, const std::string& support, double temperature) {
  std::ostringstream k;
  k << c.kind << "_" << c.param << "_" << support << "_T" << temperature;
  return k.str();
}

/// The teacher of the golden token logits: the whole distribution or the golden top-4.
distill::TeacherDistribution golden_teacher(const std::string& support, double temperature) {
  if (support == "whole") return distill::teacher_distribution(golden("tok_logits_t"), temperature);
  std::ostringstream t;
  t << "_T" << temperature;
  return {golden("tok_top4_logp" + t.str()), golden("tok_top4_ids" + t.str())};
}

}  // namespace

TEST(Losses, TokenDivergencesAndTheirGradientsMatchPyTorch) {
  for (double temperature : {1.0, 2.0})
    for (const std::string support : {"whole", "top4"})
      for (const auto& c : kTokenCases) {
        const auto key = case_key(c, support, temperature);
        auto s = golden("tok_logits_s").clone().requires_grad_(true);
        auto d = distill::divergence(c.divergence, s, golden_teacher(support, temperature), temperature, c.param);
        EXPECT_NEAR(d.item<double>(), golden_value(key), kTol) << key;
        d.backward();
        EXPECT_TRUE(torch::allclose(s.grad(), golden("grad." + key), 1e-4, 1e-6)) << key;
      }
}

TEST(Losses, TokenDivergencesVanishOnTheTeacherAndKeepEveryIdWithoutABucket) {
  const auto t = golden("tok_logits_t");
  const auto whole = distill::teacher_distribution(t, 2.0);
  for (const auto& c : kTokenCases)
    EXPECT_NEAR(distill::divergence(c.divergence, t, whole, 2.0, c.param).item<double>(), 0.0, 1e-6) << c.kind;
  // Top-K with K = vocabulary, ids in any order, is the whole distribution.
  const auto perm = torch::randperm(11).expand({10, 11}).contiguous();
  const distill::TeacherDistribution all{whole.logp.gather(1, perm), perm};
  for (const auto& c : kTokenCases)
    EXPECT_NEAR(distill::divergence(c.divergence, golden("tok_logits_s"), all, 2.0, c.param).item<double>(),
                distill::divergence(c.divergence, golden("tok_logits_s"), whole, 2.0, c.param).item<double>(), 1e-5)
        << c.kind;
  // kl_loss is the forward divergence of the whole distribution, rows over the leading dims.
  EXPECT_NEAR(distill::kl_loss(golden("tok_logits_s"), t, 2.0).item<double>(), golden_value("kl_0_whole_T2"), kTol);
}

TEST(Losses, TokenDivergencesComputeInFp32AndNameBadInputs) {
  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  const auto whole = distill::teacher_distribution(golden("tok_logits_t").to(torch::kBFloat16), 1.0);
  EXPECT_EQ(whole.logp.scalar_type(), torch::kFloat);
  const auto d = distill::divergence(distill::Divergence::kReverseKl, golden("tok_logits_s").to(torch::kBFloat16), whole,
                                     1.0);
  EXPECT_EQ(d.scalar_type(), torch::kFloat);
  EXPECT_NEAR(d.item<double>(), golden_value("reverse_kl_0_whole_T1"), 0.05);
  const auto s = golden("tok_logits_s");
  test::expect_error<Error>([&] { distill::divergence(distill::Divergence::kSkewKl, s, whole, 1.0, 1.0); },
                      {"skew KL's lambda must be in [0, 1)", "got 1"});
  test::expect_error<Error>([&] { distill::divergence(distill::Divergence::kGjs, s, whole, 1.0, -0.5); },
                      {"generalized JSD's beta must be in [0, 1]"});
  test::expect_error<Error>([&] { distill::divergence(distill::Divergence::kForwardKl, s, whole, 0.0); },
                      {"temperature must be a positive finite number, got 0"});
  test::expect_error<Error>([&] { distill::divergence(distill::Divergence::kForwardKl, s.narrow(1, 0, 3), whole, 1.0); },
                      {"student logits [2, 3, 11]", "teacher log-probabilities [10, 11]", "same rows"});
  const distill::TeacherDistribution top{golden("tok_top4_logp_T1"), golden("tok_top4_ids_T1").narrow(1, 0, 3)};
  test::expect_error<Error>([&] { distill::divergence(distill::Divergence::kForwardKl, s, top, 1.0); },
                      {"top-K teacher needs log-probabilities and ids [N, K]", "[10, 4] and [10, 3]"});
  test::expect_error<Error>([&] { distill::kl_loss(s, golden("tok_logits_t").narrow(2, 0, 5), 1.0); },
                      {"student logits [2, 5, 11] and teacher logits [2, 5, 5] differ in shape"});
}

TEST(Losses, AttentionKlMatchesPyTorchOnCausalMaps) {
  EXPECT_NEAR(distill::attention_kl(golden("catt_s"), golden("catt_t")).item<double>(),
              golden_value("attn_kl_same_heads"), kTol);
  EXPECT_NEAR(distill::attention_kl(golden("catt_s"), golden("catt_t3")).item<double>(),
              golden_value("attn_kl_diff_heads"), kTol);
  EXPECT_NEAR(distill::attention_kl(golden("catt_t"), golden("catt_t")).item<double>(), 0.0, 1e-6);
  auto s = golden("catt_s").clone().requires_grad_(true);
  distill::attention_kl(s, golden("catt_t")).backward();
  EXPECT_TRUE(torch::isfinite(s.grad()).all().item<bool>()) << "the masked zeros give no NaN";
  test::expect_error<Error>([&] { distill::attention_kl(golden("catt_s"), golden("catt_t").narrow(3, 0, 4)); },
                      {"attention_kl", "[B, heads, T, T] with equal B and T"});
}
