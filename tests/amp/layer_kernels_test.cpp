// Kernels standing in for a weight in amp's layer ops (amp/layer_kernels.h):
// found by the weight's tensor for linear, GPT-2's Conv1D (addmm) and conv2d,
// told how they were called, gone with their registrations, one per weight.
#include <gtest/gtest.h>

#include "amp/layer_kernels.h"
#include "amp/ops.h"
#include "core/error.h"

using namespace retort;
using namespace retort::amp;

namespace {

/// Returns a constant and remembers the call.
class Constant : public LayerKernel {
 public:
  explicit Constant(LayerCall* seen) : seen_(seen) {}
  torch::Tensor run(const LayerCall& call) const override {
    *seen_ = call;
    return torch::full({1}, 42.0);
  }

 private:
  LayerCall* seen_;
};

}  // namespace

TEST(LayerKernels, StandInForTheirWeightInEachLayerOpWhileRegistered) {
  auto w = torch::randn({3, 4}), other = torch::randn({3, 4}), b = torch::randn({3});
  auto conv = torch::randn({2, 1, 3, 3});
  const auto x = torch::randn({5, 4});
  LayerCall seen;
  {
    LayerKernels kernels;
    kernels.add(w, std::make_shared<Constant>(&seen));
    kernels.add(conv, std::make_shared<Constant>(&seen));
    EXPECT_EQ(amp::linear(x, w, b).item<double>(), 42.0);
    EXPECT_EQ(seen.op, LayerOp::kLinear);
    EXPECT_TRUE(seen.x.is_same(x));
    EXPECT_TRUE(seen.bias.is_same(b));
    EXPECT_EQ(amp::addmm(b, x.narrow(1, 0, 3), w).item<double>(),
              42.0);  // the Conv1D form: x @ w + b
    EXPECT_EQ(seen.op, LayerOp::kConv1D);
    EXPECT_EQ(amp::conv2d(torch::randn({1, 1, 5, 5}), conv, torch::Tensor(), 2, 1).item<double>(), 42.0);
    EXPECT_EQ(seen.op, LayerOp::kConv2d);
    EXPECT_EQ(seen.stride, std::vector<int64_t>({2}));
    EXPECT_EQ(seen.padding, std::vector<int64_t>({1}));
    EXPECT_TRUE(
        torch::allclose(amp::linear(x, other, b), torch::linear(x, other, b)));  // another weight: LibTorch's op
    EXPECT_THROW(kernels.add(w, std::make_shared<Constant>(&seen)),
                 Error);  // one kernel a weight
    LayerKernels more;
    EXPECT_THROW(more.add(w, std::make_shared<Constant>(&seen)), Error);
  }
  EXPECT_TRUE(torch::allclose(amp::linear(x, w, b), torch::linear(x, w, b)));  // gone with its registrations
}
