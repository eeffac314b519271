#include "amp/master_weights.h"

#include <gtest/gtest.h>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "amp/ops.h"
#include "core/error.h"
#include "tests/common/expect.h"

namespace amp = retort::amp;

namespace {

using retort::test::error_of;

// Built on amp ops, as models/ builds its networks.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(6, 8));
    ln = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({8})));
    bn = register_module("bn", torch::nn::BatchNorm1d(8));
    fc2 = register_module("fc2", torch::nn::Linear(8, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = amp::linear(x, fc1->weight, fc1->bias);  // [B, 8]
    h = amp::layer_norm(h, {8}, ln->weight, ln->bias);
    h = amp::batch_norm(h, bn->running_mean, bn->running_var, bn->weight, bn->bias, is_training());
    return amp::linear(torch::relu(h), fc2->weight, fc2->bias);  // [B, 3]
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::LayerNorm ln{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(Net);

Net make_net(int seed) {
  torch::manual_seed(seed);
  return Net();
}

std::map<std::string, torch::Tensor> snapshot(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : m.named_parameters()) out[item.key()] = item.value().detach().clone();
  return out;
}

}  // namespace

TEST(MasterWeights, ConvertsWeightsAndKeepsNormsAndBuffersFp32) {
  auto net = make_net(1);
  auto before = snapshot(*net);
  amp::MasterWeights master(*net);

  for (const auto& name : {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) {
    EXPECT_EQ(net->named_parameters()[name].scalar_type(), torch::kBFloat16) << name;
  }
  for (const auto& name : {"ln.weight", "ln.bias", "bn.weight", "bn.bias"}) {
    EXPECT_EQ(net->named_parameters()[name].scalar_type(), torch::kFloat) << name;
  }
  for (const auto& item : net->named_buffers()) EXPECT_NE(item.value().scalar_type(), torch::kBFloat16) << item.key();
  EXPECT_EQ(net->bn->running_mean.scalar_type(), torch::kFloat);

  auto named = master.named_parameters();
  auto model_named = net->named_parameters();
  ASSERT_EQ(named.size(), model_named.size());
  for (size_t i = 0; i < named.size(); ++i) {
    EXPECT_EQ(named[i].first, model_named[i].key()) << "masters follow model->parameters() order";
    EXPECT_EQ(named[i].second.scalar_type(), torch::kFloat) << named[i].first;
    EXPECT_TRUE(torch::equal(named[i].second, before.at(named[i].first))) << "master is the exact fp32 original";
    EXPECT_TRUE(named[i].second.requires_grad());
  }
  EXPECT_EQ(master.fp32_parameter_names(), (std::vector<std::string>{"ln.weight", "ln.bias", "bn.weight", "bn.bias"}));
  EXPECT_TRUE(net->ln->weight.is_same(named[2].second)) << "a kept parameter is its own master";
  EXPECT_TRUE(net->fc1->weight.is_same(net->named_parameters()["fc1.weight"])) << "converted in place";
}

TEST(MasterWeights, StepUpdatesMastersAndCopiesBack) {
  auto net = make_net(2);
  amp::MasterWeights master(*net);
  torch::optim::SGD opt(master.parameters(), torch::optim::SGDOptions(0.5));
  auto x = torch::randn({16, 6});
  auto y = torch::randint(0, 3, {16});
  auto rm_before = net->bn->running_mean.clone();

  torch::Tensor loss;
  {
    amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
    auto out = net->forward(x);
    EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
    loss = amp::cross_entropy(out, y);
    EXPECT_EQ(loss.scalar_type(), torch::kFloat);
  }
  loss.backward();
  EXPECT_EQ(net->fc1->weight.grad().scalar_type(), torch::kBFloat16);
  EXPECT_EQ(net->ln->weight.grad().scalar_type(), torch::kFloat);
  EXPECT_EQ(net->bn->running_mean.scalar_type(), torch::kFloat);
  EXPECT_FALSE(torch::equal(net->bn->running_mean, rm_before));

  master.copy_grads_to_master();
  auto named = master.named_parameters();
  std::map<std::string, torch::Tensor> old_master, grad;
  for (const auto& [name, m] : named) {
    ASSERT_TRUE(m.grad().defined()) << name;
    EXPECT_EQ(m.grad().scalar_type(), torch::kFloat) << name;
    old_master[name] = m.detach().clone();
    grad[name] = m.grad().clone();
  }
  EXPECT_TRUE(torch::equal(grad["fc2.weight"], net->fc2->weight.grad().to(torch::kFloat)));

  opt.step();
  master.copy_master_to_model();
  for (const auto& [name, m] : named) {
    EXPECT_TRUE(torch::equal(m, old_master[name].add(grad[name], -0.5))) << name;
  }
  EXPECT_TRUE(torch::equal(net->fc1->weight, named[0].second.to(torch::kBFloat16)));
  EXPECT_TRUE(torch::equal(net->ln->weight, named[2].second));

  master.zero_grad();
  EXPECT_FALSE(net->fc1->weight.grad().defined());
  EXPECT_FALSE(named[0].second.grad().defined());
}

TEST(MasterWeights, MasterParamsMapsTrainerParameters) {
  auto net = make_net(12);
  amp::MasterWeights master(*net, torch::kBFloat16, /*keep_norm_fp32=*/true);
  auto extra = torch::zeros({3}, torch::requires_grad());  // a projection outside the model
  amp::MasterWeights::NamedTensors params;
  for (const auto& item : net->named_parameters()) params.emplace_back(item.key(), item.value());
  params.emplace_back("proj.weight", extra);
  auto mapped = master.master_params(params);
  ASSERT_EQ(mapped.size(), params.size());
  auto masters = master.named_parameters();
  for (size_t i = 0; i + 1 < mapped.size(); ++i) {
    EXPECT_EQ(mapped[i].first, params[i].first);
    EXPECT_TRUE(mapped[i].second.is_same(masters[i].second)) << mapped[i].first;
  }
  EXPECT_FALSE(mapped[0].second.is_same(net->fc1->weight));
  EXPECT_TRUE(mapped[2].second.is_same(net->ln->weight));
  EXPECT_TRUE(mapped.back().second.is_same(extra));

  net->fc1->weight.mutable_grad() = torch::ones_like(net->fc1->weight);
  net->ln->weight.mutable_grad() = torch::ones_like(net->ln->weight);
  master.copy_grads_to_master();
  master.zero_model_grads();
  EXPECT_FALSE(net->fc1->weight.grad().defined());
  EXPECT_TRUE(masters[0].second.grad().defined()) << "the masters' gradients are the optimizer's to clear";
  EXPECT_TRUE(net->ln->weight.grad().defined()) << "a kept parameter's gradient is its master's";
}

TEST(MasterWeights, UpdatesBelowBf16ResolutionAccumulateInTheMaster) {
  torch::nn::Linear lin(torch::nn::LinearOptions(1, 1).bias(false));
  {
    torch::NoGradGuard no_grad;
    lin->weight.fill_(1.0);
  }
  amp::MasterWeights master(*lin);
  torch::optim::SGD opt(master.parameters(), torch::optim::SGDOptions(1e-3));
  for (int i = 0; i < 10; ++i) {
    lin->weight.mutable_grad() = torch::ones({1, 1}, torch::kBFloat16);
    master.copy_grads_to_master();
    opt.step();
    master.copy_master_to_model();
    if (i == 0) {
      EXPECT_EQ(lin->weight.item<float>(), 1.0f) << "1 - 1e-3 rounds back to 1 in bf16";
    }
  }
  EXPECT_NEAR(master.parameters()[0].item<float>(), 0.99f, 1e-6);
  EXPECT_EQ(lin->weight.item<float>(), 0.98828125f) << "the bf16 nearest 0.99 (spacing 2^-8 below 1)";
}

TEST(MasterWeights, NormsCanBeConvertedToo) {
  auto net = make_net(3);
  amp::MasterWeights master(*net, amp::MasterWeightsOptions().keep_norm_fp32(false));
  EXPECT_TRUE(master.fp32_parameter_names().empty());
  EXPECT_EQ(net->bn->weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(net->bn->running_var.scalar_type(), torch::kFloat) << "buffers are never converted";
  amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
  auto loss = amp::cross_entropy(net->forward(torch::randn({4, 6})), torch::tensor({0, 1, 2, 0}, torch::kLong));
  loss.backward();
  EXPECT_EQ(net->bn->weight.grad().scalar_type(), torch::kBFloat16);
}

TEST(MasterWeights, PredicateKeepsChosenModulesFp32) {
  auto net = make_net(4);
  amp::MasterWeights master(*net, amp::MasterWeightsOptions().keep_fp32(
                                      [](const std::string& name, const torch::nn::Module&) { return name == "fc2"; }));
  EXPECT_EQ(net->fc2->weight.scalar_type(), torch::kFloat);
  EXPECT_EQ(net->fc1->weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(master.fp32_parameter_names(),
            (std::vector<std::string>{"ln.weight", "ln.bias", "bn.weight", "bn.bias", "fc2.weight", "fc2.bias"}));
}

TEST(MasterWeights, TiedWeightsGetOneMaster) {
  struct TiedImpl : torch::nn::Module {
    TiedImpl() {
      enc = register_module("enc", torch::nn::Linear(4, 4));
      shared = register_parameter("shared", enc->weight);
    }
    torch::nn::Linear enc{nullptr};
    torch::Tensor shared;
  };
  auto tied = std::make_shared<TiedImpl>();
  amp::MasterWeights master(*tied);
  auto named = master.named_parameters();
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "shared");
  EXPECT_EQ(named[1].first, "enc.bias");
  EXPECT_EQ(tied->enc->weight.scalar_type(), torch::kBFloat16);
}

TEST(MasterWeights, StateRoundTrip) {
  auto net = make_net(5);
  amp::MasterWeights master(*net);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : master.parameters()) p.add_(torch::randn_like(p) * 1e-3);  // not representable in bf16
  }
  master.copy_master_to_model();
  auto state = master.state_dict();
  EXPECT_EQ(state.size(), 8u);
  EXPECT_EQ(state.at("fc1.weight").scalar_type(), torch::kFloat);

  auto other = make_net(6);
  amp::MasterWeights restored(*other);
  restored.load_state_dict(state);
  auto a = master.named_parameters();
  auto b = restored.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  auto pa = net->parameters();
  auto pb = other->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
}

TEST(MasterWeights, BadStateIsRejectedAndChangesNothing) {
  auto net = make_net(7);
  amp::MasterWeights master(*net);
  auto good = master.state_dict();
  auto before = master.state_dict();
  auto check = [&](std::map<std::string, torch::Tensor> state, const std::string& want) {
    auto msg = error_of([&] { master.load_state_dict(state); });
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
    for (const auto& [k, v] : master.state_dict()) EXPECT_TRUE(torch::equal(v, before.at(k))) << k;
  };
  auto s = good;
  s.erase("fc2.bias");
  s["fc1.weight"] = torch::zeros({8, 6});
  check(s, "MasterWeights state: missing key 'fc2.bias'");
  s = good;
  s["fc9.weight"] = torch::zeros({1});
  s["fc1.weight"] = torch::zeros({8, 6});
  check(s, "MasterWeights state: unexpected key 'fc9.weight'");
  s = good;
  s["fc1.weight"] = torch::zeros({6, 8});
  check(s, "key 'fc1.weight' must be a floating tensor of shape [8, 6], got Float [6, 8]");
}

TEST(MasterWeights, RefusesNonLowDtype) {
  auto net = make_net(8);
  auto msg = error_of([&] { amp::MasterWeights m(*net, amp::MasterWeightsOptions().dtype(torch::kFloat)); });
  EXPECT_NE(msg.find("amp::MasterWeights: dtype must be bf16 or fp16, got Float"), std::string::npos) << msg;
  EXPECT_EQ(net->fc1->weight.scalar_type(), torch::kFloat);
}

TEST(MasterWeights, TrainsWithScalerAndAdamW) {
  auto net = make_net(9);
  amp::MasterWeights master(*net);
  torch::optim::AdamW opt(master.parameters(), torch::optim::AdamWOptions(0.01));
  amp::GradScaler scaler(amp::GradScalerOptions().init_scale(256));
  scaler.set_named_parameters(master.named_parameters());
  auto x = torch::randn({32, 6});
  auto y = torch::randint(0, 3, {32});
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    torch::Tensor loss;
    {
      amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
      loss = amp::cross_entropy(net->forward(x), y);
    }
    scaler.scale(loss).backward();
    master.copy_grads_to_master();
    scaler.unscale(opt);
    if (scaler.step(opt)) master.copy_master_to_model();
    scaler.update();
    master.zero_grad();
    if (i == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  EXPECT_LT(last, first * 0.7) << first << " -> " << last;
  EXPECT_EQ(scaler.skipped_steps(), 0);
}

TEST(MasterWeightsCuda, Fp16MasterStepOnGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto net = make_net(10);
  net->to(torch::kCUDA);
  amp::MasterWeights master(*net, amp::MasterWeightsOptions().dtype(torch::kHalf));
  torch::optim::AdamW opt(master.parameters(), torch::optim::AdamWOptions(0.01));
  amp::GradScaler scaler(amp::GradScalerOptions().init_scale(1024));
  auto x = torch::randn({32, 6}, torch::kCUDA);
  auto y = torch::randint(0, 3, {32}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kLong));
  double first = 0, last = 0;
  for (int i = 0; i < 20; ++i) {
    torch::Tensor loss;
    {
      amp::Autocast guard(true, torch::kHalf, torch::kCUDA);
      auto out = net->forward(x);
      EXPECT_EQ(out.scalar_type(), torch::kHalf);
      loss = amp::cross_entropy(out, y);
    }
    scaler.scale(loss).backward();
    master.copy_grads_to_master();
    if (scaler.step(opt)) master.copy_master_to_model();
    scaler.update();
    master.zero_grad();
    if (i == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  EXPECT_EQ(net->fc1->weight.scalar_type(), torch::kHalf);
  EXPECT_EQ(master.parameters()[0].scalar_type(), torch::kFloat);
  EXPECT_LT(last, first);
}
