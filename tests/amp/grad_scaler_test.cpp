#include "amp/grad_scaler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <type_traits>

#include "core/error.h"
#include "tests/common/expect.h"
#include "launch/communicator.h"

namespace amp = retort::amp;
namespace launch = retort::launch;

namespace {

using retort::test::error_of;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// One parameter whose gradient the test sets directly.
struct Fixture {
  torch::Tensor p = torch::zeros({3}, torch::requires_grad());
  torch::optim::SGD opt{std::vector<torch::Tensor>{p}, torch::optim::SGDOptions(1.0)};

  void set_grad(std::vector<float> g) { p.mutable_grad() = torch::tensor(g); }
  // One scaler step with the given (already scaled) gradient; returns whether it stepped.
  bool step(amp::GradScaler& s, std::vector<float> g) {
    set_grad(std::move(g));
    bool stepped = s.step(opt);
    s.update();
    return stepped;
  }
};

// A communicator standing in for a world where another rank found inf/NaN: all_reduce
// MAX writes 1. Counts collectives.
class OverflowElsewhere final : public launch::Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string backend() const override { return "fake"; }
  std::shared_ptr<launch::Work> all_reduce_async(torch::Tensor t, launch::ReduceOp op) override {
    ++calls;
    last_numel = t.numel();
    last_op = op;
    if (overflow) t.fill_(1.0);
    return local.all_reduce_async(t, op);
  }
  std::shared_ptr<launch::Work> broadcast_async(torch::Tensor t, int root) override {
    return local.broadcast_async(t, root);
  }
  torch::Tensor all_gather(const torch::Tensor& t) override { return local.all_gather(t); }
  void barrier() override {}

  bool overflow = false;
  int calls = 0;
  int64_t last_numel = 0;
  launch::ReduceOp last_op = launch::ReduceOp::kSum;
  launch::LocalCommunicator local;
};

}  // namespace

TEST(GradScaler, PyTorchScaleSequence) {
  // PyTorch's test_grad_scaling_update_scale: scale 4, growth interval 2, backoff 0.25.
  amp::GradScaler s(amp::GradScalerOptions().init_scale(4).growth_factor(2).backoff_factor(0.25).growth_interval(2));
  Fixture f;
  EXPECT_TRUE(f.step(s, {4, 8, 12}));
  EXPECT_EQ(s.scale(), 4.0);
  EXPECT_EQ(s.growth_tracker(), 1);
  EXPECT_TRUE(f.step(s, {4, 8, 12}));
  EXPECT_EQ(s.scale(), 8.0);
  EXPECT_EQ(s.growth_tracker(), 0);
  EXPECT_FALSE(f.step(s, {kInf, 8, 12}));
  EXPECT_EQ(s.scale(), 2.0);
  EXPECT_EQ(s.growth_tracker(), 0);
  EXPECT_EQ(s.skipped_steps(), 1);
  EXPECT_EQ(s.consecutive_skips(), 1);
}

TEST(GradScaler, ScaleMultipliesTheLoss) {
  amp::GradScaler s(amp::GradScalerOptions().init_scale(1024));
  auto loss = torch::tensor(0.75f);
  EXPECT_EQ(s.scale(loss).item<float>(), 768.0f);
  EXPECT_EQ(s.scale(), 1024.0);
}

TEST(GradScaler, UnscaleDividesOnceAndIsIdempotent) {
  amp::GradScaler s(amp::GradScalerOptions().init_scale(8));
  Fixture f;
  f.set_grad({8, -16, 4});
  s.unscale(f.opt);
  s.unscale(f.opt);
  s.unscale(std::vector<torch::Tensor>{f.p});
  EXPECT_TRUE(torch::equal(f.p.grad(), torch::tensor({1.0f, -2.0f, 0.5f}))) << f.p.grad();
  EXPECT_TRUE(s.step(f.opt));  // does not unscale again
  EXPECT_TRUE(torch::equal(f.p, torch::tensor({-1.0f, 2.0f, -0.5f}))) << f.p;
  s.update();
  // The next step unscales again.
  f.set_grad({8, 8, 8});
  s.unscale(f.opt);
  EXPECT_TRUE(torch::equal(f.p.grad(), torch::ones({3})));
}

TEST(GradScaler, FindsEveryKindOfNonFiniteAnywhere) {
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    for (float bad : {kInf, -kInf, kNaN}) {
      for (int64_t pos : {int64_t{0}, int64_t{17}, int64_t{1023}, int64_t{1024 * 3 - 1}}) {
        auto a = torch::randn({1024 * 3}).to(dtype).set_requires_grad(true);
        auto b = torch::randn({5, 7}).to(dtype).set_requires_grad(true);
        auto g = torch::randn({1024 * 3}).to(dtype);
        g[pos] = bad;
        a.mutable_grad() = g;
        b.mutable_grad() = torch::randn({5, 7}).to(dtype);
        amp::GradScaler s(amp::GradScalerOptions().init_scale(2));
        s.unscale(std::vector<torch::Tensor>{b, a});
        EXPECT_TRUE(s.found_inf()) << c10::toString(dtype) << " " << bad << " at " << pos;
      }
    }
  }
  // Large but finite gradients are not an overflow (a sum would overflow here).
  auto big = torch::full({1000}, 3e38f).set_requires_grad(true);
  big.mutable_grad() = torch::full({1000}, 3e38f);
  amp::GradScaler s(amp::GradScalerOptions().init_scale(1));
  s.unscale(std::vector<torch::Tensor>{big});
  EXPECT_FALSE(s.found_inf());
}

namespace {

// A small model and fixed data; the same in both runs of the skip test.
struct TrainRun {
  torch::nn::Sequential model;
  std::unique_ptr<torch::optim::AdamW> opt;
  amp::GradScaler scaler;
  explicit TrainRun(amp::GradScalerOptions o) : scaler(std::move(o)) {
    torch::manual_seed(7);
    model = torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::Tanh(), torch::nn::Linear(8, 2));
    opt = std::make_unique<torch::optim::AdamW>(model->parameters(), torch::optim::AdamWOptions(0.01));
  }
  bool train_step(const torch::Tensor& x, const torch::Tensor& y, bool inject_inf) {
    opt->zero_grad();
    auto loss = torch::mse_loss(model->forward(x), y);
    scaler.scale(loss).backward();
    if (inject_inf) {
      torch::NoGradGuard no_grad;
      model->parameters()[2].grad()[0][3] = kInf;
    }
    bool stepped = scaler.step(*opt);
    scaler.update();
    return stepped;
  }
};

template <typename Map>
const torch::optim::AdamWParamState& adamw_state(const Map& state, const torch::Tensor& p) {
  // The state map's key is the TensorImpl address: printed in LibTorch 1.13, raw in 2.x.
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << p.unsafeGetTensorImpl();
    return static_cast<const torch::optim::AdamWParamState&>(*state.at(os.str()));
  } else {
    return static_cast<const torch::optim::AdamWParamState&>(*state.at(Key(p.unsafeGetTensorImpl())));
  }
}

void expect_identical(TrainRun& a, TrainRun& b, const std::string& when) {
  auto pa = a.model->parameters();
  auto pb = b.model->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << when << ": parameter " << i;
    const auto& sa = adamw_state(a.opt->state(), pa[i]);
    const auto& sb = adamw_state(b.opt->state(), pb[i]);
    EXPECT_EQ(sa.step(), sb.step()) << when << ": step count of parameter " << i;
    EXPECT_TRUE(torch::equal(sa.exp_avg(), sb.exp_avg())) << when << ": exp_avg " << i;
    EXPECT_TRUE(torch::equal(sa.exp_avg_sq(), sb.exp_avg_sq())) << when << ": exp_avg_sq " << i;
  }
}

}  // namespace

TEST(GradScaler, InjectedInfSkipsTheStepBitExactly) {
  torch::manual_seed(11);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> data;
  for (int i = 0; i < 7; ++i) data.emplace_back(torch::randn({16, 4}), torch::randn({16, 2}));
  const int bad = 3;

  TrainRun a(amp::GradScalerOptions().init_scale(1024).growth_interval(1000));
  // The control never sees step `bad`; its scale (a power of two like a's) differs after
  // a's back-off, but scaling by powers of two is exact, so the updates are the same bits.
  TrainRun b(amp::GradScalerOptions().init_scale(1024).growth_interval(1000));
  for (int i = 0; i < static_cast<int>(data.size()); ++i) {
    const bool stepped = a.train_step(data[i].first, data[i].second, i == bad);
    EXPECT_EQ(stepped, i != bad) << "step " << i;
    if (i != bad) b.train_step(data[i].first, data[i].second, false);
    if (i >= bad - 1) expect_identical(a, b, "after step " + std::to_string(i));
  }
  EXPECT_EQ(a.scaler.scale(), 512.0);
  EXPECT_EQ(b.scaler.scale(), 1024.0);
  EXPECT_EQ(a.scaler.skipped_steps(), 1);
  EXPECT_EQ(a.scaler.consecutive_skips(), 0);
}

TEST(GradScaler, HysteresisToleratesOverflowsBeforeBackingOff) {
  amp::GradScaler s(amp::GradScalerOptions().init_scale(64).hysteresis(2).growth_interval(2));
  Fixture f;
  EXPECT_FALSE(f.step(s, {kInf, 0, 0}));
  EXPECT_EQ(s.scale(), 64.0) << "first overflow tolerated";
  EXPECT_EQ(s.hysteresis_tracker(), 1);
  EXPECT_FALSE(f.step(s, {kNaN, 0, 0}));
  EXPECT_EQ(s.scale(), 32.0);
  EXPECT_FALSE(f.step(s, {kNaN, 0, 0}));
  EXPECT_EQ(s.scale(), 16.0) << "tracker stays spent until the scale grows again";
  EXPECT_TRUE(f.step(s, {1, 1, 1}));
  EXPECT_TRUE(f.step(s, {1, 1, 1}));
  EXPECT_EQ(s.scale(), 32.0);
  EXPECT_EQ(s.hysteresis_tracker(), 2) << "growth restores the hysteresis";
  EXPECT_FALSE(f.step(s, {kInf, 0, 0}));
  EXPECT_EQ(s.scale(), 32.0);
}

TEST(GradScaler, MinAndMaxScaleCap) {
  amp::GradScaler lo(amp::GradScalerOptions().init_scale(4).min_scale(2));
  Fixture f;
  f.step(lo, {kInf, 0, 0});
  EXPECT_EQ(lo.scale(), 2.0);
  f.step(lo, {kInf, 0, 0});
  EXPECT_EQ(lo.scale(), 2.0);
  amp::GradScaler hi(amp::GradScalerOptions().init_scale(8).max_scale(16).growth_interval(1));
  f.step(hi, {1, 1, 1});
  EXPECT_EQ(hi.scale(), 16.0);
  f.step(hi, {1, 1, 1});
  EXPECT_EQ(hi.scale(), 16.0);
}

TEST(GradScaler, TooManyConsecutiveSkipsNamesTermAndParameter) {
  auto encoder = torch::zeros({2, 2}, torch::requires_grad());
  auto head = torch::zeros({2}, torch::requires_grad());
  torch::optim::SGD opt({encoder, head}, torch::optim::SGDOptions(0.1));
  amp::GradScaler s(amp::GradScalerOptions().init_scale(4).max_consecutive_skips(3));
  s.set_named_parameters({{"encoder.weight", encoder}, {"head.bias", head}});
  auto step = [&](bool bad) {
    s.record_terms({{"ce", torch::tensor(0.5f)}, {"kl", torch::tensor(bad ? kNaN : 0.1f)}});
    encoder.mutable_grad() = torch::ones({2, 2});
    head.mutable_grad() = bad ? torch::tensor({1.0f, kInf}) : torch::ones({2});
    s.step(opt);
    s.update();
  };
  step(true);
  step(true);
  step(false);  // a clean step ends the run of skips
  EXPECT_EQ(s.consecutive_skips(), 0);
  step(true);
  step(true);
  auto msg = error_of([&] { step(true); });
  EXPECT_NE(msg.find("3 optimizer steps in a row skipped"), std::string::npos) << msg;
  EXPECT_NE(msg.find("amp.scaler.max_consecutive_skips=3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("first skipped step (update 4)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("non-finite loss terms: kl;"), std::string::npos) << "only kl, not the finite ce: " << msg;
  EXPECT_NE(msg.find("first non-finite gradients: head.bias (1 of 2 on rank 0)"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("encoder.weight"), std::string::npos) << msg;
  EXPECT_EQ(s.skipped_steps(), 5);
}

TEST(GradScaler, SkipWithFiniteTermsSaysSo) {
  amp::GradScaler s(amp::GradScalerOptions().init_scale(4).max_consecutive_skips(1));
  Fixture f;
  s.record_terms({{"ce", torch::tensor(0.5f)}});
  auto msg = error_of([&] { f.step(s, {0, kInf, 0}); });
  EXPECT_NE(msg.find("loss terms all finite (the overflow happened in backward)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("<unnamed parameter [3]>"), std::string::npos) << msg;
}

TEST(GradScaler, NamesFromModuleParameters) {
  torch::nn::Linear lin(3, 2);
  torch::optim::SGD opt(lin->parameters(), torch::optim::SGDOptions(0.1));
  amp::GradScaler s(amp::GradScalerOptions().max_consecutive_skips(1));
  s.set_named_parameters(lin->named_parameters());
  lin->weight.mutable_grad() = torch::zeros({2, 3});
  lin->bias.mutable_grad() = torch::tensor({kNaN, 0.0f});
  auto msg = error_of([&] {
    s.step(opt);
    s.update();
  });
  EXPECT_NE(msg.find("first non-finite gradients: bias (1 of 2 on rank 0)"), std::string::npos) << msg;
}

TEST(GradScaler, AgreesWithOtherRanksThroughOneCollective) {
  auto comm = std::make_shared<OverflowElsewhere>();
  amp::GradScaler s(amp::GradScalerOptions().init_scale(8).max_consecutive_skips(2), comm);
  Fixture f;
  EXPECT_TRUE(f.step(s, {8, 8, 8}));
  EXPECT_EQ(comm->calls, 1);
  EXPECT_EQ(comm->last_numel, 1);
  EXPECT_EQ(comm->last_op, launch::ReduceOp::kMax);
  comm->overflow = true;  // finite here, inf on the other rank
  auto before = f.p.clone();
  EXPECT_FALSE(f.step(s, {8, 8, 8}));
  EXPECT_EQ(comm->calls, 2) << "one collective per step";
  EXPECT_TRUE(torch::equal(f.p, before));
  EXPECT_EQ(s.scale(), 4.0);
  auto msg = error_of([&] { f.step(s, {8, 8, 8}); });
  EXPECT_NE(msg.find("all 1 gradients finite on rank 0 (another rank overflowed)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no loss terms recorded"), std::string::npos) << msg;
}

TEST(GradScaler, StateDictRoundTripIsExact) {
  auto opts = amp::GradScalerOptions().init_scale(1024).growth_interval(3).hysteresis(3).backoff_factor(0.3);
  amp::GradScaler a(opts);
  Fixture f;
  f.step(a, {1, 1, 1});
  f.step(a, {kInf, 1, 1});
  f.step(a, {kInf, 1, 1});
  f.step(a, {kInf, 1, 1});  // backs off by 0.3: not a power of two, so fp64 matters
  f.step(a, {1, 1, 1});
  auto state = a.state_dict();
  amp::GradScaler b(opts);
  b.load_state_dict(state);
  EXPECT_EQ(b.scale(), a.scale());
  EXPECT_EQ(b.scale(), 1024 * 0.3);
  EXPECT_EQ(b.growth_tracker(), a.growth_tracker());
  EXPECT_EQ(b.hysteresis_tracker(), a.hysteresis_tracker());
  EXPECT_EQ(b.skipped_steps(), 3);
  EXPECT_EQ(b.consecutive_skips(), 0);
  for (const auto& [key, value] : b.state_dict()) EXPECT_TRUE(torch::equal(value, state.at(key))) << key;
  // Both continue alike.
  for (auto g : {std::vector<float>{1, 1, 1}, {kNaN, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}}) {
    f.step(a, g);
    f.step(b, g);
    EXPECT_EQ(a.scale(), b.scale());
    EXPECT_EQ(a.growth_tracker(), b.growth_tracker());
    EXPECT_EQ(a.hysteresis_tracker(), b.hysteresis_tracker());
  }
}

TEST(GradScaler, BadStateIsRejectedWithTheKey) {
  amp::GradScaler s;
  auto good = s.state_dict();
  auto missing = good;
  missing.erase("growth_tracker");
  auto msg = error_of([&] { s.load_state_dict(missing); });
  EXPECT_NE(msg.find("GradScaler state: missing key 'growth_tracker'"), std::string::npos) << msg;
  auto wrong = good;
  wrong["scale"] = torch::tensor(2.0f);
  msg = error_of([&] { s.load_state_dict(wrong); });
  EXPECT_NE(msg.find("key 'scale' must be one Double value, got Float []"), std::string::npos) << msg;
  wrong = good;
  wrong["scale"] = torch::tensor(-1.0, torch::kDouble);
  msg = error_of([&] { s.load_state_dict(wrong); });
  EXPECT_NE(msg.find("key 'scale' must be positive and finite, got -1"), std::string::npos) << msg;
  wrong = good;
  wrong["skipped_steps"] = torch::tensor(int64_t{-3});
  msg = error_of([&] { s.load_state_dict(wrong); });
  EXPECT_NE(msg.find("key 'skipped_steps' must be >= 0, got -3"), std::string::npos) << msg;
  EXPECT_EQ(s.scale(), 65536.0) << "a rejected state changes nothing";
}

TEST(GradScaler, OptionsAreValidated) {
  auto check = [](amp::GradScalerOptions o, const std::string& want) {
    auto msg = error_of([&] { amp::GradScaler s(o); });
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
  };
  check(amp::GradScalerOptions().init_scale(0), "amp.scaler.init_scale: expected a positive finite number, got 0");
  check(amp::GradScalerOptions().growth_factor(1), "amp.scaler.growth_factor: expected a finite number > 1, got 1");
  check(amp::GradScalerOptions().backoff_factor(1.5), "amp.scaler.backoff_factor: expected a number in (0, 1), got 1.5");
  check(amp::GradScalerOptions().growth_interval(0), "amp.scaler.growth_interval: expected >= 1, got 0");
  check(amp::GradScalerOptions().hysteresis(0), "amp.scaler.hysteresis: expected >= 1, got 0");
  check(amp::GradScalerOptions().min_scale(8).max_scale(4).init_scale(4),
        "amp.scaler.min_scale: 8 is above amp.scaler.max_scale 4");
  check(amp::GradScalerOptions().init_scale(1e9), "amp.scaler.init_scale: 1e+09 is outside [min_scale, max_scale]");
  check(amp::GradScalerOptions().max_consecutive_skips(-1), "amp.scaler.max_consecutive_skips: expected >= 0");
  // Defaults as PyTorch's, plus ours.
  amp::GradScalerOptions d;
  EXPECT_EQ(d.init_scale(), 65536.0);
  EXPECT_EQ(d.growth_factor(), 2.0);
  EXPECT_EQ(d.backoff_factor(), 0.5);
  EXPECT_EQ(d.growth_interval(), 2000);
  EXPECT_EQ(d.hysteresis(), 1);
  EXPECT_EQ(d.min_scale(), 1.0);
  EXPECT_EQ(d.max_scale(), 16777216.0);
}

TEST(GradScaler, UpdateWithoutUnscaleIsAnError) {
  amp::GradScaler s;
  auto msg = error_of([&] { s.update(); });
  EXPECT_NE(msg.find("no unscale() or step() ran in this step"), std::string::npos) << msg;
}

TEST(GradScaler, DisabledPassesThrough) {
  amp::GradScaler s(amp::GradScalerOptions().enabled(false).init_scale(-5));  // not validated
  Fixture f;
  auto loss = torch::tensor(2.0f);
  EXPECT_TRUE(s.scale(loss).is_same(loss));
  EXPECT_EQ(s.scale(), 1.0);
  f.set_grad({kInf, 1, 1});
  s.unscale(f.opt);
  EXPECT_TRUE(std::isinf(f.p.grad()[0].item<float>()));
  EXPECT_TRUE(s.step(f.opt));
  EXPECT_TRUE(std::isinf(f.p[0].item<float>())) << "stepped even on inf";
  s.update();
  EXPECT_TRUE(s.state_dict().empty());
  s.load_state_dict({});
}

// ---- GPU --------------------------------------------------------------------------------

TEST(GradScalerCuda, FusedUnscaleMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto dev = torch::Device(torch::kCUDA);
  for (auto dtype : {torch::kFloat, torch::kHalf}) {
    auto a = torch::randn({4096}, torch::TensorOptions().device(dev).dtype(dtype)).set_requires_grad(true);
    auto b = torch::randn({33}, torch::TensorOptions().device(dev)).set_requires_grad(true);
    auto ga = torch::randn({4096}, torch::TensorOptions().device(dev).dtype(dtype)) * 64;
    auto gb = torch::randn({33}, torch::TensorOptions().device(dev)) * 64;
    a.mutable_grad() = ga.clone();
    b.mutable_grad() = gb.clone();
    amp::GradScaler s(amp::GradScalerOptions().init_scale(64));
    s.unscale(std::vector<torch::Tensor>{a, b});
    EXPECT_FALSE(s.found_inf());
    EXPECT_TRUE(torch::equal(a.grad(), ga / 64)) << c10::toString(dtype);
    EXPECT_TRUE(torch::equal(b.grad(), gb / 64));
    s.update();
    auto bad = ga.clone();
    bad[4095] = std::numeric_limits<float>::quiet_NaN();
    a.mutable_grad() = bad;
    s.unscale(std::vector<torch::Tensor>{a, b});
    EXPECT_TRUE(s.found_inf()) << c10::toString(dtype);
  }
  // A training step on the GPU with an injected inf skips, then trains.
  torch::manual_seed(3);
  torch::nn::Linear lin(8, 4);
  lin->to(dev);
  torch::optim::AdamW opt(lin->parameters(), torch::optim::AdamWOptions(0.01));
  amp::GradScaler s(amp::GradScalerOptions().init_scale(1024));
  for (int i = 0; i < 3; ++i) {
    opt.zero_grad();
    auto loss = lin->forward(torch::randn({16, 8}, dev)).pow(2).mean();
    s.scale(loss).backward();
    if (i == 1) lin->weight.grad()[0][0] = std::numeric_limits<float>::infinity();
    auto w = lin->weight.detach().clone();
    EXPECT_EQ(s.step(opt), i != 1);
    if (i == 1) {
      EXPECT_TRUE(torch::equal(w, lin->weight.detach()));
    }
    s.update();
  }
  EXPECT_EQ(s.scale(), 512.0);
}
