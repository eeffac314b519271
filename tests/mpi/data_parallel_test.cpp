// Data-parallel numerics under `mpirun -np 2`: two ranks train the model one process
// trains. Each rank also trains the one-process reference itself (LocalCommunicator), so
// both sides of every comparison are in the same test. Every rank runs every test; a
// test issues the same collectives on all ranks.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "amp/ops.h"
#include "core/fs.h"
#include "launch/mpi_communicator.h"
#include "launch/world.h"
#include "models/models.h"
#include "tests/common/synthetic.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"

namespace fs = std::filesystem;
using namespace retort;
using trainer::Trainer;
using trainer::TrainerSetup;

namespace {

std::unique_ptr<launch::World> g_world;
std::shared_ptr<launch::MpiCommunicator> g_comm;

class MpiEnvironment : public testing::Environment {
 public:
  void SetUp() override {
    g_world = std::make_unique<launch::World>();
    launch::MpiOptions o;
    o.timeout_s = 120;
    g_comm = std::make_shared<launch::MpiCommunicator>(*g_world, o);
  }
  void TearDown() override {
    g_comm.reset();
    g_world.reset();
  }
};
testing::Environment* const g_env = testing::AddGlobalTestEnvironment(new MpiEnvironment);

int rank() { return g_world->rank(); }

/// A directory both ranks name alike (the 2-rank runs share one), or this rank's own.
fs::path temp_dir(const std::string& name, bool per_rank) {
  auto pid = torch::tensor({static_cast<int64_t>(::getpid())});
  g_comm->broadcast(pid, 0);
  std::string leaf = "retort-dp-" + name + "-" + std::to_string(pid.item<int64_t>());
  if (per_rank) leaf += "-rank" + std::to_string(rank());
  auto d = fs::temp_directory_path() / leaf;
  g_comm->barrier();
  if (per_rank || rank() == 0) {
    retort::remove_tree(d);
    fs::create_directories(d);
  }
  g_comm->barrier();
  return d;
}

models::ModelOptions family(const std::string& name) {
  models::ModelOptions o;
  o.name = name;
  if (name == "cnn") {
    o.channels = {4, 8};
    o.convs_per_stage = 1;
    o.hidden = {16};
  } else if (name == "mlp") {
    o.hidden = {32, 16};
  } else {  // vit
    o.patch = 7;
    o.dim = 16;
    o.depth = 2;
    o.heads = 2;
    o.pool = "cls";
  }
  return o;
}

/// Asks every rank to stop (as SIGTERM would) after `stop_after` optimizer steps (0: never).
class StopAfter : public trainer::SupervisedTask {
 public:
  StopAfter(std::shared_ptr<models::Model> m, int64_t stop_after) : SupervisedTask(std::move(m)), left_(stop_after) {}
  void after_step() override {
    if (left_ > 0 && --left_ == 0 && rank() == 0) launch::request_stop();
  }

 private:
  int64_t left_;
};

struct Case {
  std::string family = "cnn";
  std::string amp = "off";  // off, autocast, master (bf16)
  int64_t accum = 1;
  double bucket_mb = 25;
  bool find_unused = false;
  bool resume = false;  // the 2-rank run is stopped after 3 steps and resumed
  std::string str() const {  // for messages
    std::ostringstream s;
    s << family << " amp=" << amp << " accum=" << accum << " bucket_mb=" << bucket_mb << " find_unused=" << find_unused
      << " resume=" << resume;
    return s.str();
  }
};

data::DataOptions data_options() {
  data::DataOptions d;
  d.batch_size = 16;
  d.augment = true;  // a pure function of (seed, epoch, sample): the same on any world size
  return d;
}

TrainerSetup setup_for(const Case& c, const fs::path& dir, std::shared_ptr<data::Dataset> train,
                       std::shared_ptr<launch::Communicator> comm, int64_t stop_after = 0) {
  TrainerSetup s;
  s.trainer.max_epochs = 100;
  s.trainer.max_steps = 6;
  s.trainer.seed = 3;
  s.trainer.log_every = 2;
  s.trainer.progress = "off";
  s.trainer.eval = false;
  s.trainer.grad_accum = c.accum;
  // SGD: AdamW turns a gradient that is rounding noise (attention's key bias, whose true
  // gradient is 0) into a full +-lr step of either sign, which would compare Adam, not us.
  s.optim.name = "sgd";
  s.optim.lr = 0.05;
  s.optim.momentum = 0.9;
  s.optim.weight_decay = 1e-3;
  s.data = data_options();
  s.amp.mode = c.amp;
  s.ddp.bucket_mb = c.bucket_mb;
  s.ddp.find_unused = c.find_unused;
  s.run_dir = dir;
  s.config_yaml = "test: true\n";
  s.comm = std::move(comm);
  s.train_set = std::move(train);
  torch::manual_seed(7);
  s.task = std::make_shared<StopAfter>(models::make_model(family(c.family)), stop_after);
  return s;
}

/// The newest checkpoint's model weights (fp32 masters in master mode).
std::map<std::string, torch::Tensor> final_weights(const fs::path& run_dir) {
  auto latest = trainer::Checkpointer::latest(run_dir / "checkpoints");
  if (!latest) throw Error("no checkpoint in " + run_dir.string());
  return trainer::Checkpointer::load(*latest).model;
}

/// Largest |a - b| of any floating tensor, relative to that tensor's largest |b|; integer
/// tensors (num_batches_tracked) must be equal.
double max_relative_diff(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b,
                         std::string* worst_name = nullptr) {
  double worst = 0;
  for (const auto& [name, tb] : b) {
    const auto& ta = a.at(name);
    if (!tb.is_floating_point()) continue;
    const double scale = std::max(tb.abs().max().item<double>(), 1e-12);
    const double d = (ta.to(torch::kDouble) - tb.to(torch::kDouble)).abs().max().item<double>() / scale;
    if (d > worst && worst_name) *worst_name = name;
    worst = std::max(worst, d);
  }
  return worst;
}

std::shared_ptr<data::Dataset> train_set() { return test::band_dataset(100, 11); }  // 6 batches of 16, then 4

}  // namespace

// ------------------------------------------------------------------------------------
// Batch norm across ranks
// ------------------------------------------------------------------------------------

// Rank 0 holds rows [0, split) of a batch of 8, rank 1 the rest (split 0: rank 0's shard is
// empty). Output, running statistics and input gradients equal batch norm on the whole
// batch in one process; the weight and bias gradients are each rank's share (summed here).
TEST(MpiSyncBatchNorm, TwoRanksNormaliseAsOneProcessOnTheWholeBatch) {
  for (int64_t split : {4, 5, 0}) {
    torch::manual_seed(9);
    const auto x = torch::randn({8, 3, 5, 5}) * 3 + 2, dy = torch::randn({8, 3, 5, 5});
    auto run = [&](const torch::Tensor& xs, const torch::Tensor& dys, bool sync) {
      auto xi = xs.clone().requires_grad_();
      auto w = torch::linspace(0.5, 1.5, 3).requires_grad_(), b = torch::linspace(-1, 1, 3).requires_grad_();
      auto rm = torch::zeros({3}), rv = torch::ones({3});
      auto y = sync ? amp::sync_batch_norm(xi, rm, rv, w, b, 0.1, 1e-5, g_comm) : amp::batch_norm(xi, rm, rv, w, b, true);
      (y * dys).sum().backward();
      return std::vector<torch::Tensor>{y.detach(), rm, rv, xi.grad(), w.grad(), b.grad()};
    };
    const auto ref = run(x, dy, false);
    const int64_t first = rank() == 0 ? 0 : split, rows = rank() == 0 ? split : 8 - split;
    auto got = run(x.narrow(0, first, rows), dy.narrow(0, first, rows), true);
    g_comm->all_reduce(got[4], launch::ReduceOp::kSum);
    g_comm->all_reduce(got[5], launch::ReduceOp::kSum);
    const std::string where = "rank " + std::to_string(rank()) + ", rank 0 rows " + std::to_string(split);
    EXPECT_TRUE(torch::allclose(got[0], ref[0].narrow(0, first, rows), 1e-5, 1e-5)) << where << " output";
    EXPECT_TRUE(torch::allclose(got[1], ref[1], 1e-5, 1e-6)) << where << " running_mean";
    EXPECT_TRUE(torch::allclose(got[2], ref[2], 1e-5, 1e-6)) << where << " running_var";
    EXPECT_TRUE(torch::allclose(got[3], ref[3].narrow(0, first, rows), 1e-4, 1e-5)) << where << " grad x";
    EXPECT_TRUE(torch::allclose(got[4], ref[4], 1e-4, 1e-4)) << where << " grad weight";
    EXPECT_TRUE(torch::allclose(got[5], ref[5], 1e-4, 1e-4)) << where << " grad bias";
  }
}

// ------------------------------------------------------------------------------------
// The trainer: 2 ranks vs 1 process
// ------------------------------------------------------------------------------------

// Every family and precision, with gradient accumulation, tiny and default buckets,
// find_unused, and a resume in the middle of the 2-rank run (all 144 combinations): after
// 6 SGD steps (over an epoch boundary and a short last batch) the 2 ranks' weights are the
// one process's. Tolerances, as the largest difference of any tensor relative to its
// largest entry: fp32 5e-6 (only the float reduction order differs; 9e-7 seen); bf16
// below the distance between the one-process bf16 and fp32 weights (0.61x of it at most
// seen): data parallelism adds less than the precision's own rounding.
TEST(MpiDataParallel, TwoRanksTrainTheWeightsOneProcessTrains) {
  const auto train = train_set();
  std::map<std::string, std::map<std::string, torch::Tensor>> fp32;  // one-process fp32 weights, by family and accum
  for (const char* fam : {"cnn", "mlp", "vit"})
    for (const char* amp_mode : {"off", "autocast", "master"})
      for (int combo = 0; combo < 16; ++combo) {
        Case c;
        c.family = fam;
        c.amp = amp_mode;
        c.accum = combo & 1 ? 2 : 1;
        c.bucket_mb = combo & 2 ? 0.01 : 25;
        c.find_unused = combo & 4;
        c.resume = combo & 8;
        const auto ref_dir = temp_dir("grid-ref", true), dir = temp_dir("grid", false);
        Trainer(setup_for(c, ref_dir, train, std::make_shared<launch::LocalCommunicator>())).fit();
        if (c.resume) {
          auto r = Trainer(setup_for(c, dir, train, g_comm, 3)).fit();
          launch::clear_stop_request();
          EXPECT_TRUE(r.stopped_early) << c.str();
          auto resumed = setup_for(c, dir, train, g_comm);
          resumed.trainer.resume = "auto";
          Trainer(std::move(resumed)).fit();
        } else {
          Trainer(setup_for(c, dir, train, g_comm)).fit();
        }
        g_comm->barrier();  // rank 0 has written the checkpoint
        const auto want = final_weights(ref_dir), got = final_weights(dir);
        const std::string key = c.family + std::to_string(c.accum);
        if (c.amp == "off") fp32[key] = want;
        std::string worst;
        const double diff = max_relative_diff(got, want, &worst);
        const double tol = c.amp == "off" ? 5e-6 : max_relative_diff(want, fp32.at(key));
        EXPECT_LT(diff, tol) << c.str() << ": worst tensor " << worst;
        const auto init = [&] {
          torch::manual_seed(7);
          return models::weights_of(*models::make_model(family(c.family)));
        }();
        EXPECT_GT(max_relative_diff(init, want), 0.05) << c.str() << ": training moved the weights";
        for (const auto& [name, t] : want) {
          if (!t.is_floating_point()) {
            EXPECT_TRUE(torch::equal(got.at(name), t)) << c.str() << ": " << name;
          }
        }
        g_comm->barrier();
        retort::remove_tree(ref_dir);
        if (rank() == 0) retort::remove_tree(dir);
      }
}

// Ranks that start from different weights (seeded apart) train rank 0's model: the fp32
// masters of amp.mode=master are made after rank 0's weights are broadcast, so every rank
// steps the same masters.
TEST(MpiDataParallel, MasterWeightsStartFromRankZerosWeights) {
  const auto dir = temp_dir("masters", false);
  Case c;
  c.family = "mlp";
  c.amp = "master";
  auto setup = setup_for(c, dir, train_set(), g_comm);
  torch::manual_seed(100 + rank());
  setup.task = std::make_shared<trainer::SupervisedTask>(models::make_model(family("mlp")));
  auto task = setup.task;
  Trainer(std::move(setup)).fit();
  for (const auto& [name, p] : task->model().named_parameters().pairs()) {
    auto both = g_comm->all_gather(p.detach().to(torch::kFloat).unsqueeze(0));
    EXPECT_TRUE(torch::equal(both[0], both[1])) << name;
  }
  g_comm->barrier();
  if (rank() == 0) retort::remove_tree(dir);
}

namespace {

// A 2-rank cnn run with evaluation: what it logged is what its checkpoint gives in one
// process, and its batch norm statistics are the same on both ranks.
void expect_eval_of_the_checkpoint(bool sync_batchnorm) {
  const auto dir = temp_dir(sync_batchnorm ? "eval-sync" : "eval-local", false);
  auto setup = setup_for(Case(), dir, train_set(), g_comm);
  setup.ddp.sync_batchnorm = sync_batchnorm;
  setup.trainer.eval = true;
  setup.test_set = test::band_dataset(70, 12);
  setup.data.eval_batch_size = 32;  // 3 batches, the last short (rank 0: 16 + 16 + 3)
  auto task = setup.task;
  const auto logged = Trainer(std::move(setup)).fit().last_eval;
  ASSERT_EQ(logged.samples, 70);
  for (const auto& [name, b] : task->model().named_buffers().pairs()) {
    auto both = g_comm->all_gather(b.unsqueeze(0));
    EXPECT_TRUE(torch::equal(both[0], both[1])) << name << " differs between the ranks";
  }
  g_comm->barrier();
  auto model = models::make_model(family("cnn"));
  models::load_weights(*model, final_weights(dir), dir.string());
  launch::LocalCommunicator one;
  auto data = data_options();
  data.eval_batch_size = 32;  // as `retort eval` reads it from the run's config
  const auto alone = trainer::evaluate(*model, *test::band_dataset(70, 12), data, torch::kCPU, one);
  EXPECT_NEAR(logged.loss, alone.loss, 1e-6);
  EXPECT_EQ(logged.accuracy, alone.accuracy);
  g_comm->barrier();
  if (rank() == 0) retort::remove_tree(dir);
}

}  // namespace

TEST(MpiDataParallel, LoggedEvalIsTheCheckpointsWithSyncBatchNorm) { expect_eval_of_the_checkpoint(true); }

// Without sync batch norm rank 0's running statistics are broadcast before every forward
// and every evaluation (DDP's broadcast_buffers), so the evaluation is still rank 0's model.
TEST(MpiDataParallel, LoggedEvalIsTheCheckpointsWithPerRankBatchNorm) { expect_eval_of_the_checkpoint(false); }

// Rank 0's shards are all empty (a data set of one sample): it still takes part in every
// collective, the metrics all-reduce has the same layout on both ranks (rank 0 never saw a
// loss term), sync batch norm's collectives run for its empty input, and the weights are
// the one process's.
TEST(MpiDataParallel, EmptyShardsTakePartInEveryCollective) {
  for (const char* fam : {"mlp", "cnn"}) {
    Case c;
    c.family = fam;
    const auto ref_dir = temp_dir("empty-ref", true), dir = temp_dir("empty", false);
    auto run = [&](const fs::path& d, std::shared_ptr<launch::Communicator> comm) {
      auto s = setup_for(c, d, test::band_dataset(1, 13), std::move(comm));
      s.data.batch_size = 2;  // one sample a step: rank 0 none, rank 1 one
      s.trainer.log_every = 1;
      s.trainer.max_steps = 3;
      Trainer(std::move(s)).fit();
    };
    run(ref_dir, std::make_shared<launch::LocalCommunicator>());
    run(dir, g_comm);
    g_comm->barrier();
    EXPECT_LT(max_relative_diff(final_weights(dir), final_weights(ref_dir)), 5e-6) << fam;
    if (rank() == 0) {
      std::ifstream in(dir / "metrics.jsonl");
      int rows = 0;
      for (std::string line; std::getline(in, line); ++rows)
        EXPECT_TRUE(nlohmann::json::parse(line).contains("loss_ce")) << line;
      EXPECT_EQ(rows, 3) << fam;
    }
    g_comm->barrier();
    retort::remove_tree(ref_dir);
    if (rank() == 0) retort::remove_tree(dir);
  }
}
