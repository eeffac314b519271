#include "amp/ops.h"

#include <gtest/gtest.h>

#include <cmath>

#include "amp/autocast.h"
#include "amp/policy.h"
#include "core/error.h"
#include "tests/common/expect.h"

namespace amp = retort::amp;

namespace {

using retort::test::error_of;

// The inputs of tests/amp/golden_losses.py.
torch::Tensor student() { return torch::sin(torch::arange(24, torch::kFloat) * 0.37).reshape({4, 6}) * 3; }
torch::Tensor teacher() { return torch::cos(torch::arange(24, torch::kFloat) * 0.11).reshape({4, 6}) * 2; }

}  // namespace

TEST(Policy, TableMatchesTheDesign) {
  using amp::CastPolicy;
  using amp::Op;
  for (Op op : {Op::kLinear, Op::kMatmul, Op::kBmm, Op::kAddmm, Op::kBaddbmm, Op::kConv2d, Op::kAttentionScores}) {
    EXPECT_EQ(amp::policy_of(op), CastPolicy::kLowerPrecision) << amp::op_name(op);
  }
  EXPECT_EQ(amp::policy_of(Op::kBatchNorm), CastPolicy::kFp32Stats);
  for (Op op : {Op::kSoftmax, Op::kLogSoftmax, Op::kLayerNorm, Op::kGroupNorm, Op::kExp, Op::kLog,
                Op::kPow, Op::kSum, Op::kMean, Op::kNorm, Op::kCrossEntropy, Op::kMseLoss, Op::kCosineLoss}) {
    EXPECT_EQ(amp::policy_of(op), CastPolicy::kFp32) << amp::op_name(op);
  }
  for (Op op : {Op::kAdd, Op::kCat, Op::kStack}) {
    EXPECT_EQ(amp::policy_of(op), CastPolicy::kPromote) << amp::op_name(op);
  }
  EXPECT_EQ(amp::policy_of(Op::kGelu), CastPolicy::kFp32OnCpu);
  EXPECT_STREQ(amp::op_name(Op::kCosineLoss), "cosine_loss");
  EXPECT_STREQ(amp::policy_name(CastPolicy::kPromote), "promote");
}

TEST(Ops, LowerPrecisionOpsRunInBf16) {
  torch::manual_seed(1);
  auto x = torch::randn({2, 8});
  auto w = torch::randn({4, 8}, torch::requires_grad());
  auto b = torch::randn({4}, torch::requires_grad());
  auto a3 = torch::randn({3, 2, 8});
  auto b3 = torch::randn({3, 8, 5});
  auto img = torch::randn({2, 3, 6, 6});
  auto kernel = torch::randn({4, 3, 3, 3}, torch::requires_grad());
  auto q = torch::randn({2, 2, 5, 8});
  auto k = torch::randn({2, 2, 7, 8});

  std::vector<std::pair<std::string, std::function<torch::Tensor()>>> cases = {
      {"linear", [&] { return amp::linear(x, w, b); }},
      {"matmul", [&] { return amp::matmul(x, w.t()); }},
      {"bmm", [&] { return amp::bmm(a3, b3); }},
      {"addmm", [&] { return amp::addmm(b, x, w.t()); }},
      {"baddbmm", [&] { return amp::baddbmm(torch::zeros({3, 2, 5}), a3, b3, 0.5, 2.0); }},
      {"conv2d", [&] { return amp::conv2d(img, kernel, {}, 1, 1); }},
      {"attention_scores", [&] { return amp::attention_scores(q, k, 0.125); }},
  };
  for (auto& [name, fn] : cases) {
    auto ref = fn();
    ASSERT_EQ(ref.scalar_type(), torch::kFloat) << name << " without autocast";
    amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
    auto out = fn();
    EXPECT_EQ(out.scalar_type(), torch::kBFloat16) << name;
    EXPECT_EQ(out.sizes(), ref.sizes()) << name;
    EXPECT_TRUE(torch::allclose(out.to(torch::kFloat), ref, 0.05, 0.3)) << name;
  }
  auto scores = amp::attention_scores(q, k, 0.125);
  EXPECT_TRUE(torch::allclose(scores, torch::matmul(q, k.transpose(-2, -1)) / 8, 1e-5, 1e-5));
}

TEST(Ops, AttentionScoresBackwardUnderAutocast) {
  torch::manual_seed(4);
  auto q = torch::randn({2, 2, 5, 8}, torch::requires_grad());
  auto k = torch::randn({2, 2, 7, 8}, torch::requires_grad());
  auto gq_ref = torch::matmul(torch::ones({2, 2, 5, 7}), k.detach()) * 0.125;  // d sum(q k^T s) / dq
  auto gk_ref = torch::matmul(torch::ones({2, 2, 7, 5}), q.detach()) * 0.125;
  {
    amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
    auto scores = amp::attention_scores(q, k, 0.125);
    amp::sum(amp::softmax(scores, -1) * 0 + scores).backward();
  }
  EXPECT_EQ(q.grad().scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::allclose(q.grad(), gq_ref, 0.02, 0.05)) << (q.grad() - gq_ref).abs().max();
  EXPECT_TRUE(torch::allclose(k.grad(), gk_ref, 0.02, 0.05)) << (k.grad() - gk_ref).abs().max();
}

// q and k are scaled before their product, as PyTorch's math attention: products that
// overflow the dtype unscaled but not scaled stay finite. Shown in fp32 on the CPU (fp16
// matmuls need CUDA): 4 * (1e19)^2 = 4e38 > 3.4e38, scaled by 1/2 it is 2e38.
TEST(Ops, AttentionScoresAreScaledBeforeTheProduct) {
  auto q = torch::full({1, 1, 2, 4}, 1e19f);
  auto scores = amp::attention_scores(q, q, 0.5);
  EXPECT_TRUE(torch::isfinite(scores).all().item<bool>()) << scores;
  EXPECT_NEAR(scores[0][0][0][0].item<float>() / 2e38f, 1.0, 1e-5);
  EXPECT_TRUE(torch::isinf(torch::matmul(q, q.transpose(-2, -1))).all().item<bool>()) << "the unscaled product overflows";
}

// Batch norm under autocast casts its parameters and statistics to fp32, never the data:
// a bf16 activation is normalised as it is (no fp32 copy of it made and dropped).
TEST(Ops, BatchNormUnderAutocastMakesNoCopyOfTheActivation) {
  torch::manual_seed(3);
  auto x = torch::randn({8, 4, 3, 3}).to(torch::kBFloat16);
  auto w = torch::ones({4}, torch::requires_grad()), b = torch::zeros({4}, torch::requires_grad());
  auto rm = torch::zeros({4}), rv = torch::ones({4});
  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  amp::reset_cast_cache_stats();
  auto out = amp::batch_norm(x, rm, rv, w, b, true);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(amp::cast_cache_stats().uncached, 0);
  EXPECT_EQ(amp::cast_cache_stats().casts, 0);
}

// In a world of one, sync_batch_norm is batch_norm: output, running statistics, and the
// gradients of input, weight and bias, in fp32 and from bf16 activations under autocast.
TEST(Ops, SyncBatchNormInAWorldOfOneIsBatchNorm) {
  auto comm = std::make_shared<retort::launch::LocalCommunicator>();
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    torch::manual_seed(5);
    const auto x0 = (torch::randn({6, 3, 4, 4}) * 2 + 1).to(dtype);
    const auto dy = torch::randn({6, 3, 4, 4}).to(dtype);
    auto run = [&](bool sync) {
      auto x = x0.clone().requires_grad_();
      auto w = torch::linspace(0.5, 1.5, 3).requires_grad_(), b = torch::linspace(-1, 1, 3).requires_grad_();
      auto rm = torch::full({3}, 0.1), rv = torch::full({3}, 2.0);
      torch::Tensor y;
      {
        amp::Autocast g(dtype != torch::kFloat, torch::kBFloat16, torch::kCPU);
        y = sync ? amp::sync_batch_norm(x, rm, rv, w, b, 0.1, 1e-5, comm) : amp::batch_norm(x, rm, rv, w, b, true);
      }
      (y.to(torch::kFloat) * dy.to(torch::kFloat)).sum().backward();
      return std::vector<torch::Tensor>{y.to(torch::kFloat), rm, rv, x.grad().to(torch::kFloat), w.grad(), b.grad()};
    };
    const auto ref = run(false), got = run(true);
    const char* names[] = {"output", "running_mean", "running_var", "grad x", "grad weight", "grad bias"};
    const double tol = dtype == torch::kFloat ? 1e-5 : 2e-2;  // bf16: one rounding of the output and grads
    EXPECT_EQ(got[0].sizes(), ref[0].sizes());
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_TRUE(torch::allclose(got[i], ref[i], tol, tol))
          << c10::toString(dtype) << " " << names[i] << ": max diff " << (got[i] - ref[i]).abs().max().item<float>();
  }
}

TEST(Ops, SyncBatchNormNeedsMoreThanOneValuePerChannel) {
  auto comm = std::make_shared<retort::launch::LocalCommunicator>();
  auto rm = torch::zeros({3}), rv = torch::ones({3});
  EXPECT_NE(error_of<retort::Error>([&] { amp::sync_batch_norm(torch::randn({1, 3}), rm, rv, {}, {}, 0.1, 1e-5, comm); })
                .find("more than one value per channel"),
            std::string::npos);
}

TEST(Ops, Fp32OpsReturnFp32FromBf16Inputs) {
  torch::manual_seed(2);
  auto x = torch::randn({4, 6}).to(torch::kBFloat16);
  auto pos = torch::rand({4, 6}).add(0.5).to(torch::kBFloat16);
  auto img = torch::randn({2, 4, 3, 3}).to(torch::kBFloat16);
  auto w6 = torch::ones({6}).to(torch::kBFloat16);
  auto w4 = torch::ones({4}).to(torch::kBFloat16);
  auto labels = torch::tensor({0, 5, 2, 3}, torch::kLong);
  auto rm = torch::zeros({4});
  auto rv = torch::ones({4});

  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  std::vector<std::pair<std::string, torch::Tensor>> outs = {
      {"softmax", amp::softmax(x, -1)},
      {"log_softmax", amp::log_softmax(x, -1)},
      {"layer_norm", amp::layer_norm(x, {6}, w6, {})},
      {"group_norm", amp::group_norm(img, 2, w4, {})},
      {"exp", amp::exp(x)},
      {"log", amp::log(pos)},
      {"pow", amp::pow(x, 2.0)},
      {"sum", amp::sum(x)},
      {"mean", amp::mean(x)},
      {"norm", amp::norm(x)},
      {"cross_entropy", amp::cross_entropy(x, labels)},
      {"mse_loss", amp::mse_loss(x, pos)},
      {"cosine_loss", amp::cosine_loss(x, pos)},
  };
  for (auto& [name, out] : outs) EXPECT_EQ(out.scalar_type(), torch::kFloat) << name;
  // Batch norm: fp32 statistics and parameters, the data's dtype out.
  EXPECT_EQ(amp::batch_norm(img, rm, rv, w4, {}, true).scalar_type(), torch::kBFloat16);
  EXPECT_EQ(amp::batch_norm(img.to(torch::kFloat), rm, rv, w4, {}, true).scalar_type(), torch::kFloat);
  EXPECT_EQ(rm.scalar_type(), torch::kFloat);
  EXPECT_FALSE(torch::equal(rm, torch::zeros({4}))) << "batch_norm updated its running mean";
}

TEST(Ops, PromoteToWidestInput) {
  auto lo = torch::randn({2, 3}).to(torch::kBFloat16);
  auto hi = torch::randn({2, 3});
  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  EXPECT_EQ(amp::add(lo, hi).scalar_type(), torch::kFloat);
  EXPECT_EQ(amp::add(lo, lo).scalar_type(), torch::kBFloat16);
  EXPECT_EQ(amp::cat({lo, hi}, 0).scalar_type(), torch::kFloat);
  EXPECT_EQ(amp::cat({lo, lo}, 0).scalar_type(), torch::kBFloat16);
  EXPECT_EQ(amp::stack({hi, lo}, 0).scalar_type(), torch::kFloat);
  EXPECT_EQ(amp::stack({lo, lo}, 1).sizes(), torch::IntArrayRef({2, 2, 3}));
  EXPECT_EQ(amp::target_dtype(amp::Op::kCat, {lo, hi}), torch::kFloat);
  EXPECT_EQ(amp::target_dtype(amp::Op::kLinear, {lo, hi}), torch::kBFloat16);
  EXPECT_EQ(amp::target_dtype(amp::Op::kSoftmax, {lo}), torch::kFloat);
}

TEST(Ops, GeluRunsInFp32UnderACpuGuard) {
  torch::manual_seed(4);
  auto x = torch::randn({3, 8}).to(torch::kBFloat16);
  {
    amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
    for (const char* approximate : {"none", "tanh"}) {
      auto y = amp::gelu(x, approximate);
      EXPECT_EQ(y.scalar_type(), torch::kFloat) << approximate;
      EXPECT_TRUE(torch::equal(y, torch::gelu(x.to(torch::kFloat), approximate))) << approximate;
    }
    EXPECT_EQ(amp::target_dtype(amp::Op::kGelu, {x}), torch::kFloat);
  }
  EXPECT_EQ(amp::gelu(x, "tanh").scalar_type(), torch::kBFloat16) << "autocast off: the plain op";
}

TEST(Ops, DisabledAutocastRunsThePlainOp) {
  auto x = torch::randn({2, 3});
  auto w = torch::randn({4, 3}, torch::requires_grad());
  auto lo = x.to(torch::kBFloat16);
  EXPECT_EQ(amp::linear(x, w).scalar_type(), torch::kFloat);
  EXPECT_EQ(amp::softmax(lo, -1).scalar_type(), torch::kBFloat16);
  amp::Autocast on(true, torch::kBFloat16, torch::kCPU);
  amp::Autocast off(false);
  EXPECT_EQ(amp::linear(x, w).scalar_type(), torch::kFloat);
  EXPECT_EQ(amp::softmax(lo, -1).scalar_type(), torch::kBFloat16);
  EXPECT_EQ(amp::cast_cache_stats().size, 0);
}

TEST(Ops, DoublesAndIntegersAreNeverCast) {
  auto x = torch::randn({2, 3}, torch::kDouble);
  auto w = torch::randn({4, 3}, torch::kDouble);
  auto i = torch::arange(6).reshape({2, 3});
  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  EXPECT_EQ(amp::linear(x, w).scalar_type(), torch::kDouble);
  EXPECT_EQ(amp::softmax(x, 1).scalar_type(), torch::kDouble);
  EXPECT_EQ(amp::cat({i, i}, 0).scalar_type(), torch::kLong);
}

TEST(Ops, BatchNormWritesBackLowPrecisionRunningStats) {
  torch::manual_seed(3);
  auto x = torch::randn({8, 4, 3, 3});
  auto rm32 = torch::zeros({4});
  auto rv32 = torch::ones({4});
  auto ref = torch::batch_norm(x, {}, {}, rm32, rv32, true, 0.1, 1e-5, false);
  auto rm = torch::zeros({4}, torch::kBFloat16);
  auto rv = torch::ones({4}, torch::kBFloat16);
  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  auto out = amp::batch_norm(x.to(torch::kBFloat16), rm, rv, {}, {}, true);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  // Statistics in fp32: the output is the fp32 reference up to bf16 rounding of x and out.
  EXPECT_TRUE(torch::allclose(out.to(torch::kFloat), ref, 0.02, 0.02));
  EXPECT_EQ(rm.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(rm.to(torch::kFloat), rm32, 0.02, 0.01)) << rm << rm32;
  EXPECT_TRUE(torch::allclose(rv.to(torch::kFloat), rv32, 0.02, 0.01)) << rv << rv32;
}

TEST(Losses, MatchPyTorchGoldenValues) {
  // From tests/amp/golden_losses.py (PyTorch's F.kl_div batchmean, cross_entropy, ...).
  auto s = student();
  auto t = teacher();
  auto labels = torch::tensor({0, 5, 2, 3}, torch::kLong);
  EXPECT_NEAR(amp::cross_entropy(s, labels).item<double>(), 3.49361062, 1e-5);
  EXPECT_NEAR(amp::cross_entropy(s, labels, 0.1).item<double>(), 3.38262606, 1e-5);  // label_smoothing=0.1
  EXPECT_NEAR(amp::mse_loss(s, t).item<double>(), 5.99554586, 1e-5);
  EXPECT_NEAR(amp::cosine_loss(s, t).item<double>(), 1.05918241, 1e-5);
  // Under bf16 autocast the losses read bf16-rounded inputs but compute in fp32.
  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  auto mse = amp::mse_loss(s.to(torch::kBFloat16), t.to(torch::kBFloat16));
  EXPECT_EQ(mse.scalar_type(), torch::kFloat);
  EXPECT_NEAR(mse.item<double>(), 5.99554586, 0.05);
}

TEST(Losses, SequenceLogitsAreFlattenedOverLeadingDims) {
  auto s = student();  // [4, 6]
  auto t = teacher();
  auto labels = torch::tensor({0, 5, 2, 3}, torch::kLong);
  auto s3 = s.reshape({2, 2, 6});
  EXPECT_NEAR(amp::cross_entropy(s3, labels.reshape({2, 2})).item<double>(),
              amp::cross_entropy(s, labels).item<double>(), 1e-6);
  // Probability targets.
  auto probs = torch::softmax(t, -1);
  auto expected = -(probs * torch::log_softmax(s, -1)).sum(-1).mean();
  EXPECT_NEAR(amp::cross_entropy(s, probs).item<double>(), expected.item<double>(), 1e-5);
}

TEST(Losses, LabelSmoothingIsCrossEntropyOnTheSmoothedTargets) {
  auto s = student();  // [4, 6]
  auto labels = torch::tensor({0, 5, 2, 3}, torch::kLong);
  for (double eps : {0.0, 0.05, 0.3, 0.9}) {
    auto target = torch::one_hot(labels, 6).to(torch::kFloat) * (1 - eps) + eps / 6;
    auto by_hand = -(target * torch::log_softmax(s, -1)).sum(-1).mean();
    EXPECT_NEAR(amp::cross_entropy(s, labels, eps).item<double>(), by_hand.item<double>(), 1e-5) << eps;
  }
  for (double eps : {-0.1, 1.0, std::nan("")}) {
    const auto msg = error_of([&] { amp::cross_entropy(s, labels, eps); });
    EXPECT_NE(msg.find("label_smoothing must be in [0, 1)"), std::string::npos) << msg;
  }
}

TEST(Losses, BadInputsNameTheProblem) {
  auto s = student();
  auto t = teacher();
  auto msg = error_of([&] { amp::mse_loss(s, t.narrow(0, 0, 1)); });
  EXPECT_NE(msg.find("amp::mse_loss: input [4, 6] and target [1, 6] must have the same shape"), std::string::npos)
      << msg;
  msg = error_of([&] { amp::cross_entropy(s, torch::tensor({0, 1}, torch::kLong)); });
  EXPECT_NE(msg.find("class-index target [2] must have the shape of logits [4, 6]"), std::string::npos) << msg;
  msg = error_of([&] { amp::cross_entropy(torch::randn({6}), torch::tensor(1)); });
  EXPECT_NE(msg.find("need at least 2 dims"), std::string::npos) << msg;
  msg = error_of([&] { amp::cosine_loss(torch::randn({6}), torch::randn({6})); });
  EXPECT_NE(msg.find("amp::cosine_loss: inputs [6] need at least 2 dims"), std::string::npos) << msg;
  msg = error_of([&] { amp::mse_loss(s, torch::Tensor()); });
  EXPECT_NE(msg.find("target is an undefined tensor"), std::string::npos) << msg;
}

// ---- GPU --------------------------------------------------------------------------------

TEST(OpsCuda, Fp16AutocastOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto dev = torch::Device(torch::kCUDA);
  auto x = torch::randn({8, 16}, dev);
  auto w = torch::randn({4, 16}, torch::TensorOptions().device(dev).requires_grad(true));
  auto cpu_x = torch::randn({8, 16});
  auto cpu_w = torch::randn({4, 16});
  amp::reset_cast_cache_stats();
  {
    amp::Autocast g(true, torch::kHalf, torch::kCUDA);
    auto y = amp::linear(x, w);
    auto y2 = amp::linear(x, w);
    EXPECT_EQ(y.scalar_type(), torch::kHalf);
    EXPECT_EQ(amp::softmax(y, -1).scalar_type(), torch::kFloat);
    EXPECT_EQ(amp::gelu(y, "tanh").scalar_type(), torch::kHalf) << "fp32 on CPU only";
    EXPECT_EQ(amp::add(y, x.narrow(1, 0, 4)).scalar_type(), torch::kFloat);
    EXPECT_EQ(amp::cast_cache_stats().casts, 1);
    EXPECT_EQ(amp::linear(cpu_x, cpu_w).scalar_type(), torch::kFloat) << "CPU tensors untouched by a CUDA guard";
    amp::sum(amp::add(y, y2)).backward();
  }
  EXPECT_EQ(w.grad().scalar_type(), torch::kFloat);
  {
    amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
    EXPECT_EQ(amp::linear(x, w).scalar_type(), torch::kFloat) << "CUDA tensors untouched by a CPU guard";
  }
  {
    // fp16 scores whose unscaled products (64 * 40^2 = 102400) overflow 65504; scaled by 1/8 first they do not.
    amp::Autocast g(true, torch::kHalf, torch::kCUDA);
    auto q = torch::full({1, 1, 3, 64}, 40.0f, torch::TensorOptions().device(dev));
    auto scores = amp::attention_scores(q, q, 0.125);
    EXPECT_EQ(scores.scalar_type(), torch::kHalf);
    EXPECT_TRUE(torch::isfinite(scores).all().item<bool>()) << scores;
    EXPECT_NEAR(scores.to(torch::kFloat).max().item<float>(), 12800.0f, 16.0f);
  }
  {
    amp::Autocast g(true, torch::kBFloat16, torch::kCUDA);
    EXPECT_EQ(amp::attention_scores(x.view({2, 4, 16}), x.view({2, 4, 16}), 0.25).scalar_type(), torch::kBFloat16);
    EXPECT_EQ(amp::cross_entropy(amp::linear(x, w), torch::zeros({8}, torch::TensorOptions().dtype(torch::kLong).device(dev)))
                  .scalar_type(),
              torch::kFloat);
  }
}
