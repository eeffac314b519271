// NcclCommunicator in a world of one (NCCL refuses two ranks on one GPU, and CI has no
// GPU): compiled with RETORT_HAVE_CUDA, skipped at run time without a GPU.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "launch/nccl_communicator.h"
#include "launch/world.h"
#include "tests/common/expect.h"

using retort::test::expect_error;
#include "trainer/grad_reducer.h"

#if RETORT_HAVE_CUDA
using namespace retort;
using namespace retort::launch;

namespace {

#define SKIP_WITHOUT_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

std::unique_ptr<Communicator> nccl(World& world) {
  CommOptions o;
  o.backend = "nccl";
  o.timeout_s = 60;
  return make_communicator(world, torch::Device(torch::kCUDA, 0), o);
}

LaunchInfo single() { return {false, "test"}; }

}  // namespace

TEST(Nccl, WorldOfOneOnTheFirstGpu) {
  SKIP_WITHOUT_GPU();
  World world(single());
  EXPECT_EQ(world.pick_device(), torch::Device(torch::kCUDA, 0));
  auto comm = nccl(world);
  EXPECT_EQ(comm->backend(), "nccl");
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->device(), torch::Device(torch::kCUDA, 0));
  EXPECT_EQ(make_communicator(world, torch::Device(torch::kCUDA, 0))->backend(), "local");  // auto, world of one
}

TEST(Nccl, AllReduceEveryDtypeAndOp) {
  SKIP_WITHOUT_GPU();
  World world(single());
  auto comm = nccl(world);
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf, torch::kInt, torch::kLong,
                     torch::kByte, torch::kChar}) {
    auto want = torch::arange(6, torch::TensorOptions().dtype(dtype).device(torch::kCUDA));
    for (auto op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kAvg}) {
      auto t = want.clone();
      if (op == ReduceOp::kAvg && !torch::isFloatingType(dtype)) {
        expect_error<CommError>([&] { comm->all_reduce(t, op); }, {"all_reduce(avg)", "not defined"});
        continue;
      }
      comm->all_reduce(t, op);
      EXPECT_TRUE(torch::equal(t, want)) << c10::toString(dtype);
    }
  }
  auto flags = torch::tensor({true, false}, torch::TensorOptions().device(torch::kCUDA));
  comm->all_reduce(flags, ReduceOp::kMax);
  EXPECT_TRUE(torch::equal(flags.cpu(), torch::tensor({true, false})));
  expect_error<CommError>([&] { comm->all_reduce(flags, ReduceOp::kSum); }, {"bool"});
}

TEST(Nccl, CollectiveRunsAfterTheWorkQueuedBeforeItAndBeforeTheWorkAfterWait) {
  SKIP_WITHOUT_GPU();
  World world(single());
  auto comm = nccl(world);
  auto a = torch::randn({2048, 2048}, torch::kCUDA);
  for (int round = 0; round < 5; ++round) {
    auto t = a.mm(a).sum(1);  // queued on the current stream; the collective must wait for it
    auto want = t.clone();    // same stream: holds the finished value
    auto work = comm->all_reduce_async(t, ReduceOp::kAvg);
    work->wait();             // the current stream now waits for the collective
    t.mul_(2);                // ordered after it
    EXPECT_TRUE(torch::allclose(t, 2 * want));
  }
  auto w = comm->all_reduce_async(torch::ones({1 << 20}, torch::kCUDA), ReduceOp::kSum);
  torch::cuda::synchronize();
  EXPECT_TRUE(w->done());
}

TEST(Nccl, BroadcastGatherBarrierAndStrings) {
  SKIP_WITHOUT_GPU();
  World world(single());
  auto comm = nccl(world);
  auto t = torch::arange(10, torch::kCUDA).reshape({2, 5});
  comm->broadcast(t, 0);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::arange(10).reshape({2, 5})));
  auto g = comm->all_gather(t.t());
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{1, 5, 2}));
  EXPECT_TRUE(torch::equal(g[0].cpu(), t.t().cpu()));
  comm->barrier();
  std::string text = "recipe text";
  comm->broadcast_string(text, 0);
  EXPECT_EQ(text, "recipe text");
}

TEST(Nccl, BadTensorsAreNamed) {
  SKIP_WITHOUT_GPU();
  World world(single());
  auto comm = nccl(world);
  expect_error<CommError>([&] { comm->all_reduce(torch::ones({2}), ReduceOp::kSum); }, {"tensor is on cpu", "cuda:0"});
  auto wide = torch::zeros({4, 4}, torch::kCUDA);
  expect_error<CommError>([&] { comm->all_reduce(wide.t(), ReduceOp::kSum); }, {"not contiguous"});
  expect_error<CommError>([&] { comm->broadcast(wide, 1); }, {"root 1", "world of 1"});
}

TEST(Nccl, HostTensorsAreStagedThroughTheGpu) {
  SKIP_WITHOUT_GPU();
  World world(single());
  auto comm = nccl(world);
  auto metrics = torch::tensor({1.5, 2.0, 7.0}, torch::kFloat64);  // what the trainer logs
  const auto want = metrics.clone();
  comm->all_reduce_staged(metrics, ReduceOp::kSum);
  EXPECT_TRUE(metrics.is_cpu());
  EXPECT_TRUE(torch::equal(metrics, want));  // the sum over a world of one
  auto flag = torch::full({1}, 3, torch::kInt);
  comm->all_reduce_staged(flag, ReduceOp::kMin);
  EXPECT_EQ(flag.item<int>(), 3);
  auto strided = torch::arange(8, torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA)).reshape({2, 4}).t();
  comm->all_reduce_staged(strided, ReduceOp::kMax);  // not contiguous: staged too
  EXPECT_TRUE(torch::equal(strided.cpu(), torch::arange(8, torch::kFloat).reshape({2, 4}).t()));
}

TEST(Nccl, ReducerOnGpuParameters) {
  SKIP_WITHOUT_GPU();
  World world(single());
  std::shared_ptr<Communicator> comm = nccl(world);
  torch::manual_seed(0);
  torch::nn::Linear plain(8, 4);
  plain->to(torch::kCUDA);
  torch::manual_seed(0);
  torch::nn::Linear net(8, 4);
  net->to(torch::kCUDA);
  trainer::broadcast_parameters_and_buffers(*net, *comm);
  trainer::GradReducer reducer(net->named_parameters().pairs(), comm);
  auto x = torch::randn({3, 8}, torch::kCUDA);
  plain(x).square().sum().backward();
  net(x).square().sum().backward();
  reducer.finish();
  EXPECT_TRUE(torch::allclose(net->weight.grad(), plain->weight.grad()));
}
#endif
