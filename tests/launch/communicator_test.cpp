#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "launch/communicator.h"
#include "tests/common/expect.h"

using retort::test::expect_error;

using namespace retort;
using launch::LocalCommunicator;
using launch::ReduceOp;

TEST(LocalCommunicator, IsAWorldOfOneOnTheCpu) {
  LocalCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_EQ(comm.backend(), "local");
  EXPECT_EQ(comm.device(), torch::Device(torch::kCPU));
}

TEST(LocalCommunicator, EveryReductionIsTheIdentityAndCompletesAtOnce) {
  LocalCommunicator comm;
  for (auto op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
    auto t = torch::tensor({1.5f, -2.0f, 3.0f});
    auto work = comm.all_reduce_async(t, op);
    EXPECT_TRUE(work->done());
    work->wait();
    EXPECT_TRUE(torch::equal(t, torch::tensor({1.5f, -2.0f, 3.0f})));
  }
  auto i = torch::tensor({7, 8}, torch::kInt);
  comm.all_reduce(i, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(i, torch::tensor({7, 8}, torch::kInt)));
}

TEST(LocalCommunicator, BroadcastFromRootZeroKeepsTheTensor) {
  LocalCommunicator comm;
  auto t = torch::arange(6).reshape({2, 3});
  comm.broadcast(t, 0);
  EXPECT_TRUE(torch::equal(t, torch::arange(6).reshape({2, 3})));
}

TEST(LocalCommunicator, BroadcastFromAnotherRootNamesIt) {
  LocalCommunicator comm;
  expect_error<CommError>([&] { comm.broadcast(torch::zeros({2}), 1); }, {"root 1", "world of 1"});
}

TEST(LocalCommunicator, AllGatherAddsALeadingDimensionOfOne) {
  LocalCommunicator comm;
  auto t = torch::arange(6).reshape({2, 3});
  auto g = comm.all_gather(t);
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TRUE(torch::equal(g[0], t));
  t.fill_(0);  // a copy, not a view
  EXPECT_EQ(g.sum().item<int64_t>(), 15);
}

TEST(LocalCommunicator, BroadcastStringAndBarrier) {
  LocalCommunicator comm;
  std::string text = "model: mlp\n";
  comm.broadcast_string(text, 0);
  EXPECT_EQ(text, "model: mlp\n");
  comm.barrier();
}

namespace {
/// Two ranks with the same values, as the collective sees them: a sum doubles in place.
/// Refuses what NCCL or MPI refuse (a tensor that is not contiguous).
class TwoEqualRanks final : public launch::Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string backend() const override { return "two-equal-ranks"; }
  std::shared_ptr<launch::Work> all_reduce_async(torch::Tensor t, ReduceOp) override {
    if (!t.is_contiguous()) throw CommError("not contiguous");
    t.mul_(2);
    return LocalCommunicator().all_reduce_async(t, ReduceOp::kSum);
  }
  std::shared_ptr<launch::Work> broadcast_async(torch::Tensor t, int root) override {
    return LocalCommunicator().broadcast_async(t, root);
  }
  torch::Tensor all_gather(const torch::Tensor& t) override { return torch::stack({t, t}); }
  void barrier() override {}
};
}  // namespace

TEST(Communicator, AllReduceStagedCopiesTheResultBackIntoTheCallersTensor) {
  TwoEqualRanks comm;
  auto view = torch::arange(6, torch::kFloat).reshape({2, 3}).t();  // not contiguous
  EXPECT_THROW(comm.all_reduce(view, ReduceOp::kSum), CommError);
  comm.all_reduce_staged(view, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(view, (torch::arange(6, torch::kFloat) * 2).reshape({2, 3}).t()));
  auto flat = torch::tensor({1, 2}, torch::kInt);  // on the device already: reduced in place
  comm.all_reduce_staged(flat, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(flat, torch::tensor({2, 4}, torch::kInt)));
}
