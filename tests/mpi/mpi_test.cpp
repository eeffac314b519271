// Multi-rank tests: run by ctest under `mpirun -np 2`. Every rank runs every test; a test
// must issue the same collectives on all ranks (ASSERTs before collectives only).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <limits>
#include <thread>

#include "amp/grad_scaler.h"
#include "core/error.h"
#include "launch/mpi_communicator.h"
#include "launch/world.h"
#include "tests/common/expect.h"

using retort::test::expect_error;
#include "trainer/grad_reducer.h"

using namespace retort;
using namespace retort::launch;
using trainer::GradReducer;
using trainer::GradReducerOptions;

namespace {

std::unique_ptr<World> g_world;
std::shared_ptr<MpiCommunicator> g_comm;

class MpiEnvironment : public testing::Environment {
 public:
  void SetUp() override {
    g_world = std::make_unique<World>();
    MpiOptions o;
    o.timeout_s = 120;  // a test that desynchronises the ranks ends the run, not the ctest timeout
    g_comm = std::make_shared<MpiCommunicator>(*g_world, o);
  }
  void TearDown() override {
    g_comm.reset();
    g_world.reset();
  }
};
testing::Environment* const g_env = testing::AddGlobalTestEnvironment(new MpiEnvironment);

MpiCommunicator& comm() { return *g_comm; }
int rank() { return g_world->rank(); }

}  // namespace

// ------------------------------------------------------------------------------------
// World
// ------------------------------------------------------------------------------------

TEST(MpiWorld, TwoRanksOnOneHost) {
  ASSERT_TRUE(g_world->uses_mpi());
  EXPECT_EQ(g_world->size(), 2);
  EXPECT_EQ(g_world->local_size(), 2);
  EXPECT_EQ(g_world->local_rank(), g_world->rank());
  EXPECT_GE(g_world->thread_level(), 0);
  EXPECT_EQ(comm().size(), 2);
  EXPECT_EQ(comm().rank(), g_world->rank());
  EXPECT_EQ(comm().backend(), "mpi");
  auto ranks = comm().all_gather(torch::tensor({rank()}, torch::kInt));
  EXPECT_TRUE(torch::equal(ranks.flatten(), torch::tensor({0, 1}, torch::kInt)));
}

TEST(MpiWorld, MakeCommunicatorChoosesMpiForTheCpu) {
  auto made = make_communicator(*g_world, torch::kCPU);
  EXPECT_EQ(made->backend(), "mpi");
  auto t = torch::ones({3});
  made->all_reduce(t, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(t, torch::full({3}, 2.0f)));
  CommOptions local;
  local.backend = "local";
  expect_error<ConfigError>([&] { make_communicator(*g_world, torch::kCPU, local); }, {"world of 2"});
}

// ------------------------------------------------------------------------------------
// Collectives
// ------------------------------------------------------------------------------------

class AllReduceDtype : public testing::TestWithParam<torch::ScalarType> {};

TEST_P(AllReduceDtype, SumMaxMinAndAvg) {
  const auto dtype = GetParam();
  // rank 0: 0 1 2 3 4, rank 1: 10 11 12 13 14 (all exact in every dtype)
  auto base = torch::arange(5, torch::kDouble);
  auto mine = [&] { return (base + 10 * rank()).to(dtype); };
  auto t = mine();
  comm().all_reduce(t, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(t, (2 * base + 10).to(dtype))) << t;
  t = mine();
  comm().all_reduce(t, ReduceOp::kMax);
  EXPECT_TRUE(torch::equal(t, (base + 10).to(dtype)));
  t = mine();
  comm().all_reduce(t, ReduceOp::kMin);
  EXPECT_TRUE(torch::equal(t, base.to(dtype)));
  if (torch::isFloatingType(dtype)) {
    t = mine();
    comm().all_reduce(t, ReduceOp::kAvg);
    EXPECT_TRUE(torch::equal(t, (base + 5).to(dtype))) << t;
  } else {
    t = mine();
    expect_error<CommError>([&] { comm().all_reduce(t, ReduceOp::kAvg); }, {"all_reduce(avg)", "not defined"});
  }
  EXPECT_EQ(t.scalar_type(), dtype);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AllReduceDtype,
                         testing::Values(torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf, torch::kInt,
                                         torch::kLong, torch::kByte, torch::kChar));

TEST(MpiCollectives, Bf16SumIsRoundedOnceFromFp32) {
  // 256 + 1 + 1: bf16 has 8 bits of mantissa, so adding 1s one at a time in bf16 would
  // lose them; summing in fp32 and rounding once keeps 258 -> 258 (representable).
  auto t = torch::tensor({rank() == 0 ? 256.0f : 2.0f}).to(torch::kBFloat16);
  comm().all_reduce(t, ReduceOp::kSum);
  EXPECT_EQ(t.to(torch::kFloat).item<float>(), 258.0f);
}

TEST(MpiCollectives, BoolMaxIsAnyMinIsEvery) {
  auto any = torch::tensor({rank() == 1, false});
  comm().all_reduce(any, ReduceOp::kMax);
  EXPECT_TRUE(torch::equal(any, torch::tensor({true, false})));
  auto every = torch::tensor({rank() == 1, true});
  comm().all_reduce(every, ReduceOp::kMin);
  EXPECT_TRUE(torch::equal(every, torch::tensor({false, true})));
  expect_error<CommError>([&] { comm().all_reduce(torch::tensor({true}), ReduceOp::kSum); }, {"bool", "max"});
}

TEST(MpiCollectives, BadTensorsAreRefusedBeforeAnythingIsSent) {
  const int64_t before = comm().issued();
  auto wide = torch::zeros({4, 4});
  expect_error<CommError>([&] { comm().all_reduce(wide.t().slice(0, 0, 2), ReduceOp::kSum); },
                          {"not contiguous", "[2, 4]"});
  expect_error<CommError>([&] { comm().all_reduce(torch::Tensor(), ReduceOp::kSum); }, {"undefined"});
  expect_error<CommError>([&] { comm().all_reduce(torch::zeros({2}, torch::kComplexFloat), ReduceOp::kSum); },
                          {"ComplexFloat", "not supported"});
  expect_error<CommError>([&] { comm().broadcast(torch::zeros({2}), 2); }, {"root 2", "world of 2"});
  EXPECT_EQ(comm().issued(), before);
}

TEST(MpiCollectives, BroadcastFromEachRootInEachDtype) {
  for (int root : {0, 1}) {
    for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kInt, torch::kLong, torch::kByte}) {
      auto t = (torch::arange(7, torch::kDouble) * (rank() + 1)).to(dtype).reshape({7, 1});
      comm().broadcast(t, root);
      EXPECT_TRUE(torch::equal(t, (torch::arange(7, torch::kDouble) * (root + 1)).to(dtype).reshape({7, 1})));
    }
  }
  std::string text = rank() == 1 ? "from rank one" : "";
  comm().broadcast_string(text, 1);
  EXPECT_EQ(text, "from rank one");
}

TEST(MpiCollectives, AllGatherStacksRanksInOrder) {
  auto t = torch::full({2, 3}, rank() + 1, torch::kLong);
  auto g = comm().all_gather(t.t());  // non-contiguous input is fine: gathered from a copy
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{2, 3, 2}));
  EXPECT_TRUE(torch::equal(g[0], torch::full({3, 2}, 1, torch::kLong)));
  EXPECT_TRUE(torch::equal(g[1], torch::full({3, 2}, 2, torch::kLong)));
}

TEST(MpiCollectives, BarrierHoldsBackTheEarlyRank) {
  const auto start = std::chrono::steady_clock::now();
  if (rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  comm().barrier();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.25);
}

TEST(MpiCollectives, AsyncCollectivesOverlapComputeAndCompleteInAnyOrder) {
  const int64_t before = comm().issued();
  std::vector<torch::Tensor> ts;
  std::vector<std::shared_ptr<Work>> works;
  for (int i = 0; i < 4; ++i) {
    ts.push_back(torch::full({1 << 18}, static_cast<float>(i + rank())));
    works.push_back(comm().all_reduce_async(ts.back(), ReduceOp::kSum));
  }
  EXPECT_EQ(comm().issued(), before + 4);
  // Compute while they run (the progress thread moves them along).
  auto a = torch::randn({256, 256});
  for (int i = 0; i < 5; ++i) a = torch::tanh(a.mm(a) / 256);
  for (int i = 3; i >= 0; --i) {
    works[i]->wait();
    EXPECT_TRUE(works[i]->done());
    EXPECT_EQ(ts[i][0].item<float>(), 2.0f * i + 1) << i;
    EXPECT_EQ(ts[i][(1 << 18) - 1].item<float>(), 2.0f * i + 1);
  }
  // done() alone (no wait) also finishes a collective, including the avg division.
  auto avg = torch::full({8}, static_cast<float>(rank() * 4));
  auto w = comm().all_reduce_async(avg, ReduceOp::kAvg);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!w->done() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(avg[0].item<float>(), 2.0f);
}

TEST(MpiCollectives, AnyRankStoppingAgreesOnEveryRank) {
  clear_stop_request();
  EXPECT_FALSE(any_rank_stopping(comm()));
  if (rank() == 1) request_stop();
  EXPECT_TRUE(any_rank_stopping(comm()));
  clear_stop_request();
  EXPECT_FALSE(any_rank_stopping(comm()));
}

// ------------------------------------------------------------------------------------
// GradReducer over MPI: 2 ranks == 1 process on the same global batch
// ------------------------------------------------------------------------------------

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl() {
    a = register_module("a", torch::nn::Linear(6, 32));
    b = register_module("b", torch::nn::Linear(32, 32));
    extra = register_module("extra", torch::nn::Linear(32, 32));
    head = register_module("head", torch::nn::Linear(32, 4));
  }
  torch::Tensor forward(const torch::Tensor& x, bool use_extra) {
    auto h = torch::relu(b(torch::relu(a(x))));
    if (use_extra) h = h + extra(h);
    return head(h);
  }
  torch::nn::Linear a{nullptr}, b{nullptr}, extra{nullptr}, head{nullptr};
};
TORCH_MODULE(Net);

constexpr int64_t kGlobal = 8;

struct Data {
  torch::Tensor x, y;  // [8, 6], [8]
};

Data global_batch(int64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({kGlobal, 6}), torch::randint(0, 4, {kGlobal})};
}

Net make_net(int64_t seed) {
  torch::manual_seed(seed + 100 * rank());  // different per rank: the broadcast must fix it
  Net net;
  trainer::broadcast_parameters_and_buffers(*net, comm());
  return net;
}

Net reference_net() {
  torch::manual_seed(7);
  return Net();
}

torch::Tensor ce(Net& net, const torch::Tensor& x, const torch::Tensor& y, bool use_extra) {
  return torch::nn::functional::cross_entropy(net->forward(x, use_extra), y);
}

// Rows of the global batch that this rank trains on.
std::pair<int64_t, int64_t> shard(int64_t rank0_rows) {
  if (rank() == 0) return {0, rank0_rows};
  return {rank0_rows, kGlobal - rank0_rows};
}

void expect_same_grads(Net& got, Net& want, const std::string& where) {
  auto g = got->named_parameters();
  auto w = want->named_parameters();
  for (const auto& item : w) {
    const auto& wg = item.value().grad();
    const auto& gg = g[item.key()].grad();
    ASSERT_TRUE(gg.defined()) << where << ": " << item.key();
    if (!wg.defined()) {
      EXPECT_TRUE(torch::equal(gg, torch::zeros_like(gg))) << where << ": " << item.key();
      continue;
    }
    EXPECT_TRUE(torch::allclose(gg, wg, 1e-5, 1e-6))
        << where << ": " << item.key() << " max diff " << (gg - wg).abs().max().item<float>();
  }
}

}  // namespace

TEST(MpiGradReducer, BroadcastMakesEveryRankStartFromRankZero) {
  auto net = make_net(3);
  auto w = net->a->weight.detach().clone().unsqueeze(0);
  auto all = comm().all_gather(w);
  EXPECT_TRUE(torch::equal(all[0], all[1]));
}

TEST(MpiGradReducer, TwoRanksEqualOneProcessForSeveralBucketSizes) {
  const auto data = global_batch(11);
  for (double mb : {200.0 / (1 << 20), 5000.0 / (1 << 20), 25.0}) {
    for (int64_t rank0_rows : {4, 5}) {  // even and uneven shards
      auto ref = reference_net();
      ce(ref, data.x, data.y, true).backward();

      auto net = reference_net();
      GradReducerOptions o;
      o.bucket_mb = mb;
      o.first_bucket_mb = std::min(mb, 1.0);
      GradReducer reducer(net->named_parameters().pairs(), g_comm, o);
      auto [first, rows] = shard(rank0_rows);
      const double weight = static_cast<double>(rows) / kGlobal;
      const int64_t before = comm().issued();
      (ce(net, data.x.narrow(0, first, rows), data.y.narrow(0, first, rows), true) * weight).backward();
      // The hooks issued every bucket's all-reduce before backward() returned.
      EXPECT_EQ(comm().issued() - before, static_cast<int64_t>(reducer.buckets().size()));
      reducer.finish();
      const std::string where = "bucket_mb " + std::to_string(mb) + ", rank 0 rows " + std::to_string(rank0_rows);
      expect_same_grads(net, ref, where);
      EXPECT_EQ(reducer.stats().buckets_in_backward, static_cast<int64_t>(reducer.buckets().size())) << where;
      EXPECT_EQ(reducer.stats().buckets_at_finish, 0);
      int64_t bytes = 0;
      for (auto& p : net->parameters()) bytes += p.numel() * 4;
      EXPECT_EQ(reducer.stats().bytes, bytes);
    }
  }
}

// Several SGD steps the trainer's way (LibTorch's zero_grad zeroes .grad in place and
// detach_()es it): 2 ranks track 1 process, and after the first step every .grad is a slot
// of its bucket (one storage per bucket, never reallocated): nothing is copied in or out.
TEST(MpiGradReducer, GradientsLiveInTheBucketsAcrossStepsOfTraining) {
  auto ref = reference_net();
  auto net = reference_net();
  torch::optim::SGD ref_opt(ref->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  GradReducerOptions o;
  o.bucket_mb = 2000.0 / (1 << 20);  // several buckets: async ones and the blocking last one
  GradReducer reducer(net->named_parameters().pairs(), g_comm, o);
  ASSERT_GE(reducer.buckets().size(), 3u);
  std::vector<const void*> first_ptrs;
  for (int step = 0; step < 4; ++step) {
    const auto data = global_batch(20 + step);
    ref_opt.zero_grad();
    ce(ref, data.x, data.y, true).backward();
    ref_opt.step();

    opt.zero_grad();
    auto [first, rows] = shard(step % 2 ? 5 : 4);
    (ce(net, data.x.narrow(0, first, rows), data.y.narrow(0, first, rows), true) * (double(rows) / kGlobal))
        .backward();
    reducer.finish();
    std::vector<const void*> ptrs;
    for (auto& p : net->parameters()) ptrs.push_back(p.grad().data_ptr());
    if (step == 0) first_ptrs = ptrs;
    EXPECT_EQ(ptrs, first_ptrs) << "step " << step << ": a .grad was reallocated";
    opt.step();
    const std::string where = "step " + std::to_string(step);
    auto got = net->named_parameters();
    for (const auto& item : ref->named_parameters())
      EXPECT_TRUE(torch::allclose(got[item.key()], item.value(), 1e-5, 1e-6)) << where << ": " << item.key();
  }
  // Parameters of one bucket share its buffer.
  const auto params = net->parameters();
  for (const auto& bucket : reducer.buckets()) {
    const auto& storage = params[bucket.params.front()].grad().storage();
    for (size_t k : bucket.params) EXPECT_TRUE(params[k].grad().storage().is_alias_of(storage));
  }
}

TEST(MpiGradReducer, AvgModeWithEqualShardsAndPlainMeanLoss) {
  const auto data = global_batch(12);
  auto ref = reference_net();
  ce(ref, data.x, data.y, true).backward();
  auto net = reference_net();
  GradReducerOptions o;
  o.op = ReduceOp::kAvg;
  o.bucket_mb = 0.001;
  GradReducer reducer(net->named_parameters().pairs(), g_comm, o);
  auto [first, rows] = shard(4);
  ce(net, data.x.narrow(0, first, rows), data.y.narrow(0, first, rows), true).backward();
  reducer.finish();
  expect_same_grads(net, ref, "avg");
}

TEST(MpiGradReducer, GradAccumulationCommunicatesOncePerStep) {
  const auto data = global_batch(13);
  auto ref = reference_net();
  ce(ref, data.x, data.y, true).backward();

  auto net = reference_net();
  GradReducerOptions o;
  o.bucket_mb = 0.002;
  o.rebuild_buckets = false;  // its one-time broadcast would count
  GradReducer reducer(net->named_parameters().pairs(), g_comm, o);
  // Rank r's rows: [4r, 4r + 4) in two micro-batches of 2; each weighted 2 / 8.
  const int64_t before = comm().issued();
  for (int micro = 0; micro < 2; ++micro) {
    reducer.set_sync(micro == 1);
    const int64_t first = 4 * rank() + 2 * micro;
    (ce(net, data.x.narrow(0, first, 2), data.y.narrow(0, first, 2), true) * (2.0 / kGlobal)).backward();
    if (micro == 0) {
      EXPECT_EQ(comm().issued(), before) << "no-sync micro-batch communicated";
    }
    reducer.finish();
  }
  EXPECT_EQ(comm().issued() - before, static_cast<int64_t>(reducer.buckets().size()));
  EXPECT_EQ(reducer.stats().syncs, 1);
  expect_same_grads(net, ref, "grad accumulation");
}

TEST(MpiGradReducer, FindUnusedReducesAParameterOnlyOneRankUsed) {
  // Rank 0 runs `extra` on its rows, rank 1 does not.
  const auto data = global_batch(14);
  auto ref = reference_net();
  ((ce(ref, data.x.narrow(0, 0, 4), data.y.narrow(0, 0, 4), true) +
    ce(ref, data.x.narrow(0, 4, 4), data.y.narrow(0, 4, 4), false)) *
   0.5)
      .backward();

  auto net = reference_net();
  GradReducerOptions o;
  o.find_unused = true;
  o.bucket_mb = 0.001;
  o.first_bucket_mb = 0.0001;
  GradReducer reducer(net->named_parameters().pairs(), g_comm, o);
  auto [first, rows] = shard(4);
  (ce(net, data.x.narrow(0, first, rows), data.y.narrow(0, first, rows), rank() == 0) * 0.5).backward();
  reducer.finish();
  expect_same_grads(net, ref, "find_unused");
  EXPECT_TRUE(net->extra->weight.grad().abs().sum().item<float>() > 0);  // rank 0's part reached rank 1
  if (rank() == 1) {
    EXPECT_GE(reducer.stats().buckets_at_finish, 1);
  } else {
    EXPECT_EQ(reducer.stats().buckets_at_finish, 0);
  }
}

// `extra` is used by no rank in the later steps: with find_unused it keeps no gradient on
// either rank, so AdamW leaves it where it was (no weight decay, no momentum from the
// first step), while a parameter that one rank used gets that rank's gradient everywhere.
TEST(MpiGradReducer, AParameterNoRankUsedIsLeftAloneByTheOptimizer) {
  auto net = reference_net();
  GradReducerOptions o;
  o.find_unused = true;
  o.bucket_mb = 0.001;
  GradReducer reducer(net->named_parameters().pairs(), g_comm, o);
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(0.05).weight_decay(0.5));
  auto step = [&](bool rank0_uses_extra, int64_t seed) {
    const auto data = global_batch(seed);
    auto [first, rows] = shard(4);
    (ce(net, data.x.narrow(0, first, rows), data.y.narrow(0, first, rows), rank0_uses_extra && rank() == 0) * 0.5)
        .backward();
    reducer.finish();
    opt.step();
    reducer.zero_grad();
  };
  step(true, 30);  // rank 0 used it: both ranks step it
  const auto before = net->extra->weight.detach().clone();
  EXPECT_TRUE(net->extra->weight.grad().defined());
  for (int64_t seed = 31; seed < 34; ++seed) step(false, seed);
  EXPECT_FALSE(net->extra->weight.grad().defined());
  EXPECT_TRUE(torch::equal(net->extra->weight, before)) << "rank " << rank();
  auto both = comm().all_gather(net->extra->weight.detach().unsqueeze(0));
  EXPECT_TRUE(torch::equal(both[0], both[1]));
}

TEST(MpiGradReducer, UnusedOnEveryRankIsAnErrorOnEveryRankWithoutAHang) {
  auto net = reference_net();
  GradReducerOptions o;
  o.bucket_mb = 0.001;
  GradReducer reducer(net->named_parameters().pairs(), g_comm, o);
  const auto data = global_batch(15);
  ce(net, data.x, data.y, false).backward();
  expect_error<Error>([&] { reducer.finish(); }, {"extra.weight, extra.bias", "ddp.find_unused"});
  comm().barrier();  // both ranks are still in step
  net->zero_grad();
  ce(net, data.x, data.y, true).backward();
  reducer.finish();
  EXPECT_EQ(reducer.stats().syncs, 1);
}

// The GradScaler's found-inf decision over MPI: an inf on rank 1 only makes both ranks
// skip the step (weights untouched everywhere) and back off the scale alike.
TEST(MpiGradScaler, InfOnOneRankMakesEveryRankSkip) {
  auto p = torch::ones({4}, torch::requires_grad());
  torch::optim::SGD opt({p}, torch::optim::SGDOptions(0.1));
  amp::GradScaler scaler(amp::GradScalerOptions().init_scale(8), g_comm);
  auto step = [&](bool poison) {
    opt.zero_grad();
    auto loss = scaler.scale((p * p).sum());
    loss.backward();
    if (poison) p.mutable_grad()[2] = std::numeric_limits<float>::infinity();
    const bool stepped = scaler.step(opt);
    scaler.update();
    return stepped;
  };
  EXPECT_TRUE(step(false));
  const auto before = p.detach().clone();
  EXPECT_FALSE(step(rank() == 1)) << "rank " << rank();
  EXPECT_TRUE(torch::equal(p.detach(), before)) << "rank " << rank();
  EXPECT_EQ(scaler.scale(), 4.0);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_TRUE(step(false));  // and both go on
  EXPECT_FALSE(torch::equal(p.detach(), before));
}
