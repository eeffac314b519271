#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "launch/communicator.h"
#include "tests/launch/helpers.h"

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
