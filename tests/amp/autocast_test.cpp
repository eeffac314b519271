#include "amp/autocast.h"

#include <gtest/gtest.h>

#include <thread>

#include "amp/ops.h"
#include "amp/options.h"
#include "core/error.h"
#include "tests/common/expect.h"

namespace amp = retort::amp;

namespace {

using retort::test::error_of;

}  // namespace

TEST(Autocast, OffByDefault) {
  EXPECT_FALSE(amp::is_enabled());
  auto x = torch::randn({2, 3});
  EXPECT_TRUE(amp::cast(x, torch::kBFloat16).is_same(x));
}

TEST(Autocast, NestedGuardsOverrideAndRestore) {
  {
    amp::Autocast outer(true, torch::kBFloat16, torch::kCPU);
    EXPECT_TRUE(amp::is_enabled());
    EXPECT_EQ(amp::current_dtype(), torch::kBFloat16);
    EXPECT_EQ(amp::current_device_type(), torch::kCPU);
    {
      amp::Autocast off(false);
      EXPECT_FALSE(amp::is_enabled());
      auto x = torch::randn({2, 3});
      auto w = torch::randn({4, 3});
      EXPECT_EQ(amp::linear(x, w).scalar_type(), torch::kFloat);
    }
    EXPECT_TRUE(amp::is_enabled());
    {
      // CUDA guard without a GPU is fine: it only decides which tensors get cast.
      amp::Autocast cuda(true, torch::kHalf, torch::kCUDA);
      EXPECT_EQ(amp::current_dtype(), torch::kHalf);
      EXPECT_EQ(amp::current_device_type(), torch::kCUDA);
      auto x = torch::randn({2, 3});
      auto w = torch::randn({4, 3});
      auto y = amp::linear(x, w);
      EXPECT_EQ(y.scalar_type(), torch::kFloat) << "CPU tensors must be untouched by a CUDA guard";
    }
    EXPECT_EQ(amp::current_dtype(), torch::kBFloat16);
    EXPECT_EQ(amp::current_device_type(), torch::kCPU);
  }
  EXPECT_FALSE(amp::is_enabled());
}

TEST(Autocast, Fp16OnCpuIsRefusedWithClearMessage) {
  amp::Autocast outer(true, torch::kBFloat16, torch::kCPU);
  auto msg = error_of([] { amp::Autocast g(true, torch::kHalf, torch::kCPU); });
  EXPECT_NE(msg.find("fp16 autocast is not supported on CPU"), std::string::npos) << msg;
  EXPECT_NE(msg.find("use bf16"), std::string::npos) << msg;
  // The failed guard left the state alone.
  EXPECT_TRUE(amp::is_enabled());
  EXPECT_EQ(amp::current_dtype(), torch::kBFloat16);
}

TEST(Autocast, OtherDtypesAndDevicesAreRefused) {
  auto msg = error_of([] { amp::Autocast g(true, torch::kFloat, torch::kCPU); });
  EXPECT_NE(msg.find("dtype Float is not a low-precision type"), std::string::npos) << msg;
  msg = error_of([] { amp::Autocast g(true, torch::kBFloat16, torch::kMeta); });
  EXPECT_NE(msg.find("device type"), std::string::npos) << msg;
  EXPECT_NE(msg.find("use CPU or CUDA"), std::string::npos) << msg;
  EXPECT_FALSE(amp::is_enabled());
  // Disabled guards take any dtype: they only switch autocast off.
  amp::Autocast off(false, torch::kFloat, torch::kCPU);
  EXPECT_FALSE(amp::is_enabled());
}

TEST(Autocast, FromAmpOptions) {
  amp::AmpOptions opts;
  {
    amp::Autocast g(opts, torch::kCPU);
    EXPECT_FALSE(amp::is_enabled());
  }
  opts.mode = amp::AmpMode::kMaster;
  {
    amp::Autocast g(opts, torch::kCPU);
    EXPECT_TRUE(amp::is_enabled());
    EXPECT_EQ(amp::current_dtype(), torch::kBFloat16);
  }
  opts.dtype = torch::kHalf;
  auto msg = error_of([&] { amp::Autocast g(opts, torch::kCPU); });
  EXPECT_NE(msg.find("fp16 autocast is not supported on CPU"), std::string::npos) << msg;
  opts.dtype = torch::kChar;
  msg = error_of([&] { amp::Autocast g(opts, torch::kCPU); });
  EXPECT_NE(msg.find("dtype Char is not a low-precision type"), std::string::npos) << msg;
}

TEST(Autocast, StateIsThreadLocal) {
  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  bool other = true;
  std::thread t([&] { other = amp::is_enabled(); });
  t.join();
  EXPECT_FALSE(other);
  EXPECT_TRUE(amp::is_enabled());
}

TEST(CastCache, WeightUsedTwiceIsCastOnce) {
  auto w = torch::randn({4, 3}, torch::requires_grad());
  auto x = torch::randn({2, 3});
  amp::reset_cast_cache_stats();
  {
    amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
    auto a = amp::linear(x, w);
    auto b = amp::linear(x * 2, w);
    EXPECT_EQ(a.scalar_type(), torch::kBFloat16);
    auto stats = amp::cast_cache_stats();
    EXPECT_EQ(stats.casts, 1);
    EXPECT_EQ(stats.hits, 1);
    EXPECT_EQ(stats.size, 1);
    EXPECT_TRUE(amp::cast(w, torch::kBFloat16).is_same(amp::cast(w, torch::kBFloat16)));
    {
      amp::Autocast inner(true, torch::kBFloat16, torch::kCPU);
      amp::linear(x, w);
    }
    // Leaving an inner guard keeps the cache; only the outermost clears it.
    EXPECT_EQ(amp::cast_cache_stats().size, 1);
    EXPECT_EQ(amp::cast_cache_stats().casts, 1);
  }
  EXPECT_EQ(amp::cast_cache_stats().size, 0);
  {
    amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
    amp::linear(x, w);
  }
  EXPECT_EQ(amp::cast_cache_stats().casts, 2) << "a new region casts again";
}

TEST(CastCache, OnlyFp32LeavesThatRequireGradAreCached) {
  auto frozen = torch::randn({4, 3});                          // no grad: not a trained weight
  auto leaf = torch::randn({4, 3}, torch::requires_grad());
  auto activation = leaf * 2;                                  // not a leaf
  auto view = leaf.detach().requires_grad_().t();              // a view
  amp::reset_cast_cache_stats();
  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  amp::cast(frozen, torch::kBFloat16);
  amp::cast(activation, torch::kBFloat16);
  amp::cast(view, torch::kBFloat16);
  amp::cast(leaf, torch::kFloat);  // fp32 policy on an fp32 tensor: nothing to do
  EXPECT_EQ(amp::cast_cache_stats().casts, 0);
  EXPECT_EQ(amp::cast_cache_stats().size, 0);
}

TEST(CastCache, InPlaceUpdateAndGradModeInvalidate) {
  auto w = torch::randn({4, 3}, torch::requires_grad());
  amp::reset_cast_cache_stats();
  amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
  torch::Tensor no_grad_cast;
  {
    torch::NoGradGuard no_grad;
    no_grad_cast = amp::cast(w, torch::kBFloat16);
  }
  EXPECT_FALSE(no_grad_cast.requires_grad());
  auto with_grad = amp::cast(w, torch::kBFloat16);
  EXPECT_TRUE(with_grad.requires_grad()) << "a no_grad cast must not be reused where gradients are wanted";
  EXPECT_EQ(amp::cast_cache_stats().casts, 2);
  {
    torch::NoGradGuard no_grad;
    w.mul_(2);  // an optimizer step inside the region
  }
  auto after = amp::cast(w, torch::kBFloat16);
  EXPECT_FALSE(after.is_same(with_grad));
  EXPECT_TRUE(torch::equal(after, w.detach().to(torch::kBFloat16)));
  EXPECT_EQ(amp::cast_cache_stats().casts, 3);
}

TEST(CastCache, GradientsReachFp32ParamsThroughCachedCast) {
  torch::manual_seed(0);
  auto w = torch::randn({5, 3}, torch::requires_grad());
  auto b = torch::randn({5}, torch::requires_grad());
  auto x1 = torch::randn({4, 3});
  auto x2 = torch::randn({4, 3});
  {
    amp::Autocast g(true, torch::kBFloat16, torch::kCPU);
    auto y = amp::add(amp::linear(x1, w, b), amp::linear(x2, w, b));  // w, b used twice
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    amp::sum(y).backward();
  }
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().scalar_type(), torch::kFloat);
  EXPECT_EQ(b.grad().scalar_type(), torch::kFloat);
  // d/dw sum(x1 w^T + x2 w^T) = column sums of x1 + x2, for every output row.
  auto expected_w = (x1.sum(0) + x2.sum(0)).unsqueeze(0).expand({5, 3});
  EXPECT_TRUE(torch::allclose(w.grad(), expected_w, 0.02, 0.05)) << w.grad() << expected_w;
  EXPECT_TRUE(torch::allclose(b.grad(), torch::full({5}, 8.0f)));
}
