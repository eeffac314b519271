// Two ranks (mpirun -np 2): masks become rank 0's on every rank, and fine-tuning keeps
// the pruned weights at zero and the ranks in step. A binary of its own under mpirun.
#include <gtest/gtest.h>

#include "core/fs.h"
#include "launch/communicator.h"
#include "launch/world.h"
#include "models/models.h"
#include "prune/prune.h"
#include "trainer/pruned_task.h"
#include "trainer/trainer.h"

using namespace retort;

namespace {

std::unique_ptr<launch::World> g_world;

class MpiEnvironment : public testing::Environment {
 public:
  void SetUp() override { g_world = std::make_unique<launch::World>(); }
  void TearDown() override { g_world.reset(); }
};
testing::Environment* const g_env = testing::AddGlobalTestEnvironment(new MpiEnvironment);

}  // namespace

TEST(MpiPrunedTask, MasksFromRankZeroAndZerosHoldAcrossRanks) {
  auto& world = *g_world;
  ASSERT_EQ(world.size(), 2);
  std::shared_ptr<launch::Communicator> comm = launch::make_communicator(world, torch::kCPU);
  models::ModelOptions o;
  o.channels = {4, 8};
  o.convs_per_stage = 1;
  o.hidden = {16};
  // Different weights on each rank: masks derived locally would differ.
  torch::manual_seed(100 + static_cast<uint64_t>(world.rank()));
  auto model = models::make_model(o);
  prune::PruneOptions po;
  po.method = "magnitude";
  po.sparsity = 0.7;
  auto local = prune::compute_masks(*model, po);
  auto task = std::make_shared<trainer::PrunedTask>(std::make_shared<trainer::SupervisedTask>(model), local, comm);
  for (const auto& [name, m] : task->masks().tensors()) {
    auto gathered = comm->all_gather(m.to(torch::kUInt8));
    EXPECT_TRUE(torch::equal(gathered[0], gathered[1])) << name;
  }

  trainer::TrainerSetup s;
  s.trainer.max_epochs = 10;
  s.trainer.max_steps = 6;
  s.trainer.progress = "off";
  s.trainer.eval = false;
  s.trainer.checkpoint_every = 100;
  s.optim.weight_decay = 0.1;
  s.optim.lr = 1e-2;
  s.data.batch_size = 32;
  s.run_dir = std::filesystem::temp_directory_path() / "retort-mpi-pruned";
  std::filesystem::create_directories(s.run_dir);
  s.config_yaml = "test: true\n";
  s.comm = comm;
  torch::manual_seed(1);  // the same data on both ranks; the sampler shards it
  auto d = std::make_shared<data::Dataset>();
  d->labels = torch::randint(0, 10, {128}, torch::kInt64);
  d->images = torch::randint(0, 255, {128, 1, 28, 28}, torch::kInt64).to(torch::kUInt8);
  s.train_set = d;
  s.task = task;
  trainer::Trainer(std::move(s)).fit();
  auto params = model->named_parameters();
  for (const auto& [name, m] : task->masks().tensors()) {
    const auto& p = params[name];
    EXPECT_TRUE(p.detach().masked_select(m.logical_not()).eq(0).all().item<bool>()) << name;
    auto gathered = comm->all_gather(p.detach().contiguous());
    EXPECT_TRUE(torch::equal(gathered[0], gathered[1])) << name;
  }
  comm->barrier();
  if (world.rank() == 0) retort::remove_tree(std::filesystem::temp_directory_path() / "retort-mpi-pruned");
}
