#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "launch/communicator.h"
#include "tests/common/expect.h"
#include "trainer/grad_reducer.h"

using namespace retort;
using launch::ReduceOp;
using trainer::assign_buckets;
using trainer::GradReducer;
using trainer::GradReducerOptions;
using test::expect_error;

namespace {

// A world of `n` ranks whose peers hold exactly what this rank holds: a sum all-reduce
// multiplies by n, avg leaves the tensor as it is. The result lands only at wait(), as
// with a real asynchronous collective, so a reducer that forgets to wait fails.
class FakePeers final : public launch::Communicator {
 public:
  explicit FakePeers(int n, torch::Device device = torch::kCPU) : n_(n), device_(device) {}
  int rank() const override { return 0; }
  int size() const override { return n_; }
  std::string backend() const override { return "fake"; }
  torch::Device device() const override { return device_; }

  std::shared_ptr<launch::Work> all_reduce_async(torch::Tensor t, ReduceOp op) override {
    launched.push_back(t.numel());
    return std::make_shared<Deferred>([t, op, n = n_]() mutable {
      if (op == ReduceOp::kSum) t.mul_(n);
    });
  }
  std::shared_ptr<launch::Work> broadcast_async(torch::Tensor, int) override {
    ++broadcasts;
    return std::make_shared<Deferred>([] {});
  }
  torch::Tensor all_gather(const torch::Tensor& t) override {
    auto out = torch::stack(std::vector<torch::Tensor>(n_, t));
    if (peer_differs) out[1] += 1;
    return out;
  }
  void barrier() override {}

  std::vector<int64_t> launched;  // numel of each all-reduce, in issue order
  int broadcasts = 0;
  bool peer_differs = false;

 private:
  class Deferred final : public launch::Work {
   public:
    explicit Deferred(std::function<void()> fn) : fn_(std::move(fn)) {}
    void wait() override {
      if (fn_) fn_();
      fn_ = nullptr;
    }
    bool done() override { return !fn_; }

   private:
    std::function<void()> fn_;
  };
  int n_;
  torch::Device device_;
};

struct NetImpl : torch::nn::Module {
  NetImpl() {
    a = register_module("a", torch::nn::Linear(4, 8));
    b = register_module("b", torch::nn::Linear(8, 8));
    unused = register_module("unused", torch::nn::Linear(8, 8));
    head = register_module("head", torch::nn::Linear(8, 3));
  }
  torch::Tensor forward(const torch::Tensor& x, bool use_all = false) {
    auto h = torch::relu(b(torch::relu(a(x))));
    if (use_all) h = h + unused(h);
    return head(h);
  }
  torch::nn::Linear a{nullptr}, b{nullptr}, unused{nullptr}, head{nullptr};
};
TORCH_MODULE(Net);

struct Batch {
  torch::Tensor x, y;
};

Batch batch(int64_t seed, int64_t n = 6) {
  torch::manual_seed(seed);
  return {torch::randn({n, 4}), torch::randint(0, 3, {n})};
}

torch::Tensor loss_of(Net& net, const Batch& b, bool use_all) {
  return torch::nn::functional::cross_entropy(net->forward(b.x, use_all), b.y);
}

std::vector<torch::Tensor> grads(Net& net) {
  std::vector<torch::Tensor> out;
  for (auto& p : net->parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  return out;
}

Net make_net() {
  torch::manual_seed(0);
  return Net();
}

GradReducerOptions tiny_buckets() {
  GradReducerOptions o;
  o.first_bucket_mb = 100.0 / (1024 * 1024);  // 100 bytes: the head's weight alone
  o.bucket_mb = 300.0 / (1024 * 1024);
  return o;
}

}  // namespace

// ------------------------------------------------------------------------------------
// Bucket assignment
// ------------------------------------------------------------------------------------

TEST(AssignBuckets, ReverseOrderFirstBucketSmallOthersFull) {
  std::vector<torch::Tensor> params(6, torch::zeros({1000}));  // 4000 bytes each
  auto buckets = assign_buckets(params, 4000, 10000);
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0].params, (std::vector<size_t>{5}));
  EXPECT_EQ(buckets[1].params, (std::vector<size_t>{4, 3, 2}));  // closes once >= 10000
  EXPECT_EQ(buckets[2].params, (std::vector<size_t>{1, 0}));
  EXPECT_EQ(buckets[0].bytes, 4000);
  EXPECT_EQ(buckets[1].bytes, 12000);
  EXPECT_EQ(buckets[2].numel, 2000);
}

TEST(AssignBuckets, OneBucketPerDtypeOrderedByReadiness) {
  std::vector<torch::Tensor> params{torch::zeros({10}), torch::zeros({10}, torch::kDouble), torch::zeros({10}),
                                    torch::zeros({10}, torch::kDouble)};
  auto buckets = assign_buckets(params, 1 << 20, 1 << 20);
  ASSERT_EQ(buckets.size(), 2u);
  EXPECT_EQ(buckets[0].dtype, torch::kDouble);
  EXPECT_EQ(buckets[0].params, (std::vector<size_t>{3, 1}));
  EXPECT_EQ(buckets[1].dtype, torch::kFloat);
  EXPECT_EQ(buckets[1].params, (std::vector<size_t>{2, 0}));
  EXPECT_EQ(buckets[0].bytes, 160);
}

TEST(AssignBuckets, AParameterLargerThanABucketStandsAlone) {
  std::vector<torch::Tensor> params{torch::zeros({10}), torch::zeros({100000}), torch::zeros({10})};
  auto buckets = assign_buckets(params, 100, 1000);
  ASSERT_EQ(buckets.size(), 2u);
  EXPECT_EQ(buckets[0].params, (std::vector<size_t>{2, 1}));  // first: 40 B < 100, then the big one closes it
  EXPECT_EQ(buckets[1].params, (std::vector<size_t>{0}));
}

TEST(GradReducer, BucketsFollowTheOptionsAndSkipFrozenParameters) {
  auto net = make_net();
  net->b->bias.set_requires_grad(false);
  auto comm = std::make_shared<FakePeers>(2);
  GradReducer reducer(net->named_parameters().pairs(), comm, tiny_buckets());
  EXPECT_EQ(reducer.names().size(), 7u);  // 8 parameters, one frozen
  EXPECT_EQ(reducer.names().back(), "head.bias");
  ASSERT_GE(reducer.buckets().size(), 2u);
  // Bucket 0 starts at the last parameter and closes past 100 bytes.
  EXPECT_EQ(reducer.buckets()[0].params.front(), 6u);
  EXPECT_GE(reducer.buckets()[0].bytes, 100);
  int64_t total = 0;
  for (const auto& b : reducer.buckets()) total += b.numel;
  int64_t expected = 0;
  for (const auto& p : net->parameters())
    if (p.requires_grad()) expected += p.numel();
  EXPECT_EQ(total, expected);
}

// ------------------------------------------------------------------------------------
// World of one (LocalCommunicator): no copies, same checks
// ------------------------------------------------------------------------------------

TEST(GradReducerLocal, GradientsAreExactlyThoseOfPlainBackward) {
  auto plain = make_net();
  loss_of(plain, batch(1), false).backward();
  auto net = make_net();
  GradReducerOptions o;
  o.find_unused = true;
  GradReducer reducer(net->named_parameters().pairs(), std::make_shared<launch::LocalCommunicator>(), o);
  loss_of(net, batch(1), false).backward();
  reducer.finish();
  auto expected = grads(plain);
  auto got = grads(net);
  for (size_t i = 0; i < got.size(); ++i) {
    if (!expected[i].defined()) {
      EXPECT_FALSE(got[i].defined()) << i;  // unused: no gradient, so the optimizer skips it
    } else {
      EXPECT_TRUE(torch::equal(got[i], expected[i]));
    }
  }
  EXPECT_EQ(reducer.stats().syncs, 1);
  EXPECT_EQ(reducer.stats().bytes, 0);
  EXPECT_EQ(reducer.stats().buckets_in_backward, 0);
}

TEST(GradReducerLocal, UnusedParametersAreNamedAndTheReducerRecovers) {
  auto net = make_net();
  GradReducer reducer(net->named_parameters().pairs(), std::make_shared<launch::LocalCommunicator>());
  loss_of(net, batch(1), false).backward();
  expect_error<Error>([&] { reducer.finish(); },
                      {"2 parameter(s) got no gradient", "unused.weight, unused.bias", "ddp.find_unused=true"});
  net->zero_grad();
  loss_of(net, batch(2), true).backward();
  reducer.finish();  // every parameter used now: fine, no "second gradient" left over
  EXPECT_EQ(reducer.stats().syncs, 1);
}

TEST(GradReducerLocal, TwoSynchronisedBackwardsWithoutFinishAreAnError) {
  auto net = make_net();
  GradReducer reducer(net->named_parameters().pairs(), std::make_shared<launch::LocalCommunicator>());
  loss_of(net, batch(1), true).backward();
  expect_error<Error>([&] { loss_of(net, batch(2), true).backward(); }, {"got a second gradient", "set_sync(false)"});
}

TEST(GradReducerLocal, NoSyncMicroBatchesAccumulate) {
  auto plain = make_net();
  for (int k = 0; k < 3; ++k) loss_of(plain, batch(k), true).backward();
  auto net = make_net();
  GradReducer reducer(net->named_parameters().pairs(), std::make_shared<launch::LocalCommunicator>());
  reducer.set_sync(false);
  EXPECT_FALSE(reducer.sync());
  loss_of(net, batch(0), true).backward();
  reducer.finish();  // no-op without sync
  loss_of(net, batch(1), true).backward();
  reducer.set_sync(true);
  loss_of(net, batch(2), true).backward();
  reducer.finish();
  auto a = grads(plain), b = grads(net);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i], b[i]));
  EXPECT_EQ(reducer.stats().syncs, 1);
}

TEST(GradReducer, BadOptionsAreNamed) {
  auto net = make_net();
  auto comm = std::make_shared<launch::LocalCommunicator>();
  GradReducerOptions o;
  o.bucket_mb = 0;
  expect_error<ConfigError>([&] { GradReducer r(net->named_parameters().pairs(), comm, o); }, {"ddp.bucket_mb", "> 0"});
  o = GradReducerOptions();
  o.op = ReduceOp::kMax;
  expect_error<ConfigError>([&] { GradReducer r(net->named_parameters().pairs(), comm, o); }, {"sum or avg"});
  expect_error<Error>([&] { GradReducer r(net->named_parameters().pairs(), nullptr); }, {"no communicator"});
}

TEST(GradReducer, SharedParametersListedTwiceAreRejected) {
  auto net = make_net();
  std::vector<std::pair<std::string, torch::Tensor>> params{{"x", net->a->weight}, {"tied", net->a->weight}};
  expect_error<Error>([&] { GradReducer r(params, std::make_shared<launch::LocalCommunicator>()); },
                      {"'tied' is listed twice"});
}

TEST(GradReducer, ParametersMustLiveOnTheCommunicatorsDevice) {
  auto net = make_net();
  auto comm = std::make_shared<FakePeers>(2, torch::Device(torch::kCUDA, 0));
  expect_error<Error>([&] { GradReducer r(net->named_parameters().pairs(), comm); },
                      {"'a.weight' is on cpu", "cuda:0"});
}

TEST(GradReducer, RemovesItsHooksWhenDestroyed) {
  auto net = make_net();
  {
    GradReducer reducer(net->named_parameters().pairs(), std::make_shared<launch::LocalCommunicator>());
  }
  // Without hooks nobody complains about double backwards or unused parameters.
  loss_of(net, batch(1), false).backward();
  loss_of(net, batch(2), false).backward();
}

// ------------------------------------------------------------------------------------
// Several ranks (peers holding the same gradients)
// ------------------------------------------------------------------------------------

TEST(GradReducerPeers, SumOfTwoIdenticalRanksDoublesAndLaunchesDuringBackward) {
  auto plain = make_net();
  loss_of(plain, batch(1), true).backward();
  auto net = make_net();
  auto comm = std::make_shared<FakePeers>(2);
  GradReducer reducer(net->named_parameters().pairs(), comm, tiny_buckets());
  const size_t n_buckets = reducer.buckets().size();
  ASSERT_GE(n_buckets, 3u);
  loss_of(net, batch(1), true).backward();
  // Every bucket went out from a hook, before backward() returned, in bucket order.
  ASSERT_EQ(comm->launched.size(), n_buckets);
  for (size_t i = 0; i < n_buckets; ++i) EXPECT_EQ(comm->launched[i], reducer.buckets()[i].numel);
  reducer.finish();
  auto a = grads(plain), b = grads(net);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(b[i], 2 * a[i])) << i;
  EXPECT_EQ(reducer.stats().buckets_in_backward, static_cast<int64_t>(n_buckets));
  EXPECT_EQ(reducer.stats().buckets_at_finish, 0);
  int64_t bytes = 0;
  for (auto& p : net->parameters()) bytes += p.numel() * 4;
  EXPECT_EQ(reducer.stats().bytes, bytes);
  EXPECT_GE(reducer.stats().wait_seconds, 0.0);
}

TEST(GradReducerPeers, AvgOfIdenticalRanksIsTheLocalGradient) {
  auto plain = make_net();
  loss_of(plain, batch(1), true).backward();
  auto net = make_net();
  auto o = tiny_buckets();
  o.op = ReduceOp::kAvg;
  GradReducer reducer(net->named_parameters().pairs(), std::make_shared<FakePeers>(4), o);
  loss_of(net, batch(1), true).backward();
  reducer.finish();
  auto a = grads(plain), b = grads(net);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i], b[i]));
}

// Unused here, so (the peers holding the same) unused on every rank: reduced as zeros at
// finish, then left without a gradient, as DDP leaves a globally unused parameter.
TEST(GradReducerPeers, UnusedParametersAreReducedAtFinishAndKeepNoGradient) {
  auto net = make_net();
  auto comm = std::make_shared<FakePeers>(2);
  auto o = tiny_buckets();
  o.find_unused = true;
  o.rebuild_buckets = false;
  GradReducer reducer(net->named_parameters().pairs(), comm, o);
  loss_of(net, batch(1), false).backward();
  const size_t in_backward = comm->launched.size();
  EXPECT_LT(in_backward, reducer.buckets().size());  // the unused layer's bucket waits
  reducer.finish();
  // All buckets, then the used-anywhere flags (one per parameter).
  ASSERT_EQ(comm->launched.size(), reducer.buckets().size() + 1);
  EXPECT_EQ(comm->launched.back(), static_cast<int64_t>(net->parameters().size()));
  EXPECT_FALSE(net->unused->weight.grad().defined());
  EXPECT_FALSE(net->unused->bias.grad().defined());
  EXPECT_TRUE(net->a->weight.grad().defined());
  EXPECT_EQ(reducer.stats().buckets_in_backward, static_cast<int64_t>(in_backward));
  EXPECT_GE(reducer.stats().buckets_at_finish, 1);
}

// A parameter no rank uses is not moved by AdamW's weight decay or momentum: it has no
// gradient at the step, in every step, though an earlier step gave it one.
TEST(GradReducerLocal, AParameterUnusedInAStepIsNotMovedByAdamW) {
  auto net = make_net();
  auto o = tiny_buckets();
  o.find_unused = true;
  GradReducer reducer(net->named_parameters().pairs(), std::make_shared<launch::LocalCommunicator>(), o);
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(0.1).weight_decay(0.5));
  auto step = [&](bool use_all, int64_t seed) {
    loss_of(net, batch(seed), use_all).backward();
    reducer.finish();
    opt.step();
    reducer.zero_grad();
  };
  step(true, 1);  // used once: AdamW now holds momentum for it
  const auto before = net->unused->weight.detach().clone();
  const auto a_before = net->a->weight.detach().clone();
  for (int64_t k = 2; k < 5; ++k) step(false, k);
  EXPECT_TRUE(torch::equal(net->unused->weight, before));
  EXPECT_FALSE(torch::equal(net->a->weight, a_before));
}

// amp.mode=master: each micro-batch's bf16 gradient is added into the fp32 master's .grad
// as it arrives and dropped, so micro-batches add up in fp32 (1 + 2^-9 is 1 in bf16).
TEST(GradReducerLocal, LowPrecisionGradientsAccumulateInTheirFp32Mains) {
  auto p = torch::zeros({4}, torch::kBFloat16).requires_grad_();
  auto main = torch::zeros({4}, torch::kFloat).requires_grad_();
  GradReducer reducer({{"p", p}}, std::make_shared<launch::LocalCommunicator>(), {}, {{"p", main}});
  reducer.set_sync(false);
  (p.to(torch::kFloat) * 1.0).sum().backward();
  EXPECT_FALSE(p.grad().defined()) << "the bf16 gradient was folded and dropped";
  reducer.set_sync(true);
  (p.to(torch::kFloat) * 0.001953125).sum().backward();  // 2^-9, exact in bf16
  reducer.finish();
  EXPECT_FALSE(p.grad().defined());
  ASSERT_TRUE(main.grad().defined());
  EXPECT_EQ(main.grad().scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(main.grad(), torch::full({4}, 1.001953125f)));
  // The next step starts from zero, in the same buffer.
  const void* buffer = main.grad().data_ptr();
  reducer.zero_grad();
  (p.to(torch::kFloat) * 3.0).sum().backward();
  reducer.finish();
  EXPECT_TRUE(torch::equal(main.grad(), torch::full({4}, 3.0f)));
  EXPECT_EQ(main.grad().data_ptr(), buffer);
}

// Across ranks the buckets hold the fp32 mains: every backend reduces fp32.
TEST(GradReducerPeers, LowPrecisionParametersAreReducedInFp32) {
  auto p = torch::zeros({4}, torch::kBFloat16).requires_grad_();
  auto main = torch::zeros({4}, torch::kFloat).requires_grad_();
  auto comm = std::make_shared<FakePeers>(2);
  GradReducer reducer({{"p", p}}, comm, {}, {{"p", main}});
  ASSERT_EQ(reducer.buckets().size(), 1u);
  EXPECT_EQ(reducer.buckets()[0].dtype, torch::kFloat);
  (p.to(torch::kFloat) * 1.001953125).sum().backward();  // 1 + 2^-9: not a bf16 value
  reducer.finish();
  EXPECT_TRUE(torch::equal(main.grad(), torch::full({4}, 2 * static_cast<float>(c10::BFloat16(1.001953125f)))));
  EXPECT_FALSE(p.grad().defined());
}

// Registered in the opposite order of use: the reverse-registration buckets follow the
// forward order, so in backward every bucket but the last waits behind an incomplete one.
// After the first synchronised backward the buckets follow the ready order, once.
struct MisorderedNetImpl : torch::nn::Module {
  MisorderedNetImpl() {
    head = register_module("head", torch::nn::Linear(8, 3));
    mid = register_module("mid", torch::nn::Linear(8, 8));
    in = register_module("in", torch::nn::Linear(4, 8));
  }
  torch::Tensor forward(const torch::Tensor& x) { return head(torch::relu(mid(torch::relu(in(x))))); }
  torch::nn::Linear head{nullptr}, mid{nullptr}, in{nullptr};
};
TORCH_MODULE(MisorderedNet);

TEST(GradReducerPeers, BucketsAreRebuiltOnceInTheOrderGradientsBecameReady) {
  torch::manual_seed(0);
  MisorderedNet net;
  torch::manual_seed(0);
  MisorderedNet plain;
  auto comm = std::make_shared<FakePeers>(2);
  auto o = tiny_buckets();
  o.first_bucket_mb = o.bucket_mb = 1.0 / (1024 * 1024);  // a bucket per parameter
  GradReducer reducer(net->named_parameters().pairs(), comm, o);
  const auto before = reducer.buckets();
  ASSERT_EQ(before.size(), 6u);
  auto loss = [&](MisorderedNet& n, int64_t seed) {
    const auto b = batch(seed);
    return torch::nn::functional::cross_entropy(n->forward(b.x), b.y);
  };
  loss(net, 1).backward();
  reducer.finish();
  EXPECT_GE(reducer.stats().buckets_held_back, 4);  // all but the input layer's
  EXPECT_EQ(reducer.stats().rebuilds, 1);
  const auto after = reducer.buckets();
  // head (registered first) is ready first now.
  const auto names = reducer.names();
  EXPECT_EQ(names[after.front().params.front()].rfind("head.", 0), 0u) << names[after.front().params.front()];
  EXPECT_EQ(names[after.back().params.front()].rfind("in.", 0), 0u);
  // The reduced gradients moved with their slots: still 2x a plain backward.
  loss(plain, 1).backward();
  for (const auto& [name, g] : plain->named_parameters().pairs())
    EXPECT_TRUE(torch::allclose(net->named_parameters()[name].grad(), 2 * g.grad())) << name;
  reducer.reset_stats();
  reducer.zero_grad();
  loss(net, 2).backward();
  reducer.finish();
  EXPECT_EQ(reducer.stats().buckets_held_back, 0);
  EXPECT_EQ(reducer.stats().rebuilds, 0);
  EXPECT_EQ(reducer.stats().buckets_in_backward, 6);
}

TEST(GradReducerPeers, ZeroGradKeepsTheGradientsInTheirBuckets) {
  auto net = make_net();
  GradReducer reducer(net->named_parameters().pairs(), std::make_shared<FakePeers>(2), tiny_buckets());
  loss_of(net, batch(1), true).backward();
  reducer.finish();
  std::vector<const void*> ptrs;
  for (auto& p : net->parameters()) ptrs.push_back(p.grad().data_ptr());
  reducer.zero_grad();
  for (size_t i = 0; i < ptrs.size(); ++i) {
    const auto g = net->parameters()[i].grad();
    EXPECT_EQ(g.data_ptr(), ptrs[i]);
    EXPECT_TRUE(torch::equal(g, torch::zeros_like(g)));
  }
}

TEST(GradReducerPeers, UnusedParametersWithoutFindUnusedAreAnError) {
  auto net = make_net();
  GradReducer reducer(net->named_parameters().pairs(), std::make_shared<FakePeers>(2), tiny_buckets());
  loss_of(net, batch(1), false).backward();
  expect_error<Error>([&] { reducer.finish(); }, {"unused.weight", "unused.bias"});
  net->zero_grad();
  loss_of(net, batch(1), true).backward();
  reducer.finish();
}

TEST(GradReducerPeers, NoSyncMicroBatchesDoNotCommunicate) {
  auto plain = make_net();
  loss_of(plain, batch(1), true).backward();
  loss_of(plain, batch(2), true).backward();
  auto net = make_net();
  auto comm = std::make_shared<FakePeers>(2);
  GradReducer reducer(net->named_parameters().pairs(), comm, tiny_buckets());
  reducer.set_sync(false);
  loss_of(net, batch(1), true).backward();
  EXPECT_TRUE(comm->launched.empty());
  reducer.set_sync(true);
  loss_of(net, batch(2), true).backward();
  reducer.finish();
  EXPECT_EQ(comm->launched.size(), reducer.buckets().size());
  auto a = grads(plain), b = grads(net);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(b[i], 2 * a[i]));
}

TEST(BroadcastParameters, SendsEveryParameterAndBuffer) {
  torch::nn::Sequential model(torch::nn::Linear(4, 4), torch::nn::BatchNorm1d(4));
  FakePeers comm(2);
  trainer::broadcast_parameters_and_buffers(*model, comm);
  // Linear: weight, bias; BatchNorm: weight, bias + running_mean, running_var, num_batches_tracked.
  EXPECT_EQ(comm.broadcasts, 7);
}

TEST(BroadcastParameters, DifferentModelsOnTheRanksAreNamed) {
  torch::nn::Linear model(4, 4);
  FakePeers comm(2);
  comm.peer_differs = true;
  expect_error<Error>([&] { trainer::broadcast_parameters_and_buffers(*model, comm); },
                      {"rank 1's parameters and buffers", "same model"});
  EXPECT_EQ(comm.broadcasts, 0);
}

TEST(BroadcastParameters, WorldOfOneDoesNothing) {
  torch::nn::Linear model(4, 4);
  launch::LocalCommunicator comm;
  auto before = model->weight.clone();
  trainer::broadcast_parameters_and_buffers(*model, comm);
  EXPECT_TRUE(torch::equal(before, model->weight));
  expect_error<Error>([&] { trainer::broadcast_parameters_and_buffers(*model, comm, 2); }, {"root 2"});
}
