// What the numerics of data parallelism cost per training step, under mpirun (2 ranks, 1
// thread each), on the student CNN (recipes/model/cnn_small.yaml). Driven by
// bench/ddp_bench.sh; prints one JSON line from rank 0.
//   mpirun -np 2 ddp_bench [--batch 64] [--reps 200]
//
// Each variant is a full step the trainer's way (autocast forward, cross-entropy, scaled
// backward with the reducer's hooks, finish, unscale, AdamW step, zero_grad) on its own
// copy of the model; variants run interleaved in a shuffled order (the same on every
// rank), and each time is the slowest rank's. Variants:
//   sync_bn        fp32, batch norm statistics over both ranks (ddp.sync_batchnorm=true)
//   sync_bn_compute  the same computation with a world of one: its cost without communication
//   broadcast_bn   fp32, per-rank statistics, rank 0's buffers broadcast before the forward
//   local_bn       fp32, per-rank statistics, nothing synchronised (no longer offered: the
//                  baseline the two above cost against)
//   master_fp32    bf16 master weights, gradients folded into fp32 masters as they arrive,
//                  buckets of fp32 (amp.mode=master now)
//   master_bf16    bf16 master weights, bf16 gradients reduced, then copied to the masters
//                  (amp.mode=master before), buckets rebuilt in ready order
//   master_bf16_static  the same without the rebuild: the fp32 norm bucket holds the others back
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>

#include "amp/amp.h"
#include "bench/mpi_bench.h"
#include "launch/mpi_communicator.h"
#include "launch/world.h"
#include "models/models.h"
#include "trainer/grad_reducer.h"
#include "trainer/optim.h"
#include "trainer/task.h"
#include "trainer/trainer.h"

using namespace retort;

namespace {

struct Variant {
  std::string name;
  bool sync_bn = false, broadcast_bn = false, master = false, fp32_grads = true, rebuild = true;
};

/// One variant's model, reducer and optimizer, stepped the trainer's way.
class Stepper {
 public:
  Stepper(const Variant& v, std::shared_ptr<launch::Communicator> comm) : v_(v), comm_(std::move(comm)) {
    torch::manual_seed(0);
    model_ = models::make_model(bench::student_options());
    model_->train();
    if (v.sync_bn)
      model_->set_batch_norm_sync(v.name == "sync_bn_compute" ? std::make_shared<launch::LocalCommunicator>() : comm_);
    amp_.mode = v.master ? amp::AmpMode::kMaster : amp::AmpMode::kOff;
    if (v.master) master_ = std::make_unique<amp::MasterWeights>(*model_, torch::kBFloat16);
    trainer::NamedParams params;
    for (auto& kv : model_->named_parameters()) params.emplace_back(kv.key(), kv.value());
    const auto stepped = master_ ? master_->master_params(params) : params;
    trainer::OptimOptions oo;
    oo.lr = 1e-3;
    optimizer_ = trainer::make_optimizer(oo, stepped);
    trainer::GradReducerOptions ro;
    ro.rebuild_buckets = v.rebuild;
    reducer_ = std::make_unique<trainer::GradReducer>(params, comm_, ro,
                                                      v.fp32_grads ? stepped : trainer::NamedParams{});
    scaler_ = std::make_unique<amp::GradScaler>(amp::scaler_options(amp_), comm_);
  }

  void step(const torch::Tensor& x, const torch::Tensor& y) {
    if (v_.broadcast_bn) trainer::broadcast_buffers(*model_, *comm_);
    torch::Tensor loss;
    {
      amp::Autocast autocast(amp_, torch::kCPU);
      loss = amp::cross_entropy(model_->forward(x).logits, y);
    }
    scaler_->scale(loss * 0.5).backward();  // this rank's half of the global batch
    reducer_->finish();
    if (master_ && !v_.fp32_grads) master_->copy_grads_to_master();
    scaler_->unscale(*optimizer_);
    if (scaler_->step(*optimizer_) && master_) master_->copy_master_to_model();
    scaler_->update();
    if (master_ && !v_.fp32_grads) {  // as the trainer cleared them before
      optimizer_->zero_grad();
      master_->zero_model_grads();
    } else {
      reducer_->zero_grad();
    }
  }

  const trainer::GradReducer& reducer() const { return *reducer_; }

 private:
  Variant v_;
  std::shared_ptr<launch::Communicator> comm_;
  std::shared_ptr<models::Model> model_;
  amp::AmpOptions amp_;
  std::unique_ptr<amp::MasterWeights> master_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<trainer::GradReducer> reducer_;
  std::unique_ptr<amp::GradScaler> scaler_;
};

}  // namespace

int main(int argc, char** argv) {
  const auto flags = bench::read_flags(argc, argv, {"--batch", "--reps"}, "ddp_bench");
  const int64_t batch = flags.count("--batch") ? std::stoll(flags.at("--batch")) : 64;
  const int reps = flags.count("--reps") ? std::stoi(flags.at("--reps")) : 200;
  const auto world_ptr = bench::peer_world("ddp_bench");
  launch::World& world = *world_ptr;
  trainer::set_threads(1);
  std::shared_ptr<launch::Communicator> comm = std::make_shared<launch::MpiCommunicator>(world);
  const std::vector<Variant> variants = {
      {"sync_bn", true, false, false, true, true},
      {"sync_bn_compute", true, false, false, true, true},
      {"broadcast_bn", false, true, false, true, true},
      {"local_bn", false, false, false, true, true},
      {"master_fp32", true, false, true, true, true},
      {"master_bf16", true, false, true, false, true},
      {"master_bf16_static", true, false, true, false, false},
  };
  std::vector<std::unique_ptr<Stepper>> steppers;
  for (const auto& v : variants) steppers.push_back(std::make_unique<Stepper>(v, comm));
  torch::manual_seed(1 + world.rank());
  auto x = torch::randn({batch, 1, 28, 28});
  auto y = torch::randint(0, 10, {batch}, torch::kInt64);

  for (int i = 0; i < 10; ++i)
    for (auto& s : steppers) s->step(x, y);  // warm-up: connections, allocator, bucket rebuilds
  std::vector<int64_t> held_back;
  for (auto& s : steppers) held_back.push_back(s->reducer().stats().buckets_held_back);
  std::mt19937 rng(12345);  // the same order on every rank: the collectives must match
  const auto step_ms = bench::interleaved_medians(static_cast<int>(variants.size()), reps, rng,
                                                  [&](int v) { steppers[static_cast<size_t>(v)]->step(x, y); });
  // What one small collective costs (sync batch norm issues two per layer and step).
  auto small = torch::zeros({65}, torch::kDouble);
  const double gather_s = bench::median_time(reps, [&] { comm->all_gather(small); });
  const double reduce_s = bench::median_time(reps, [&] { comm->all_reduce(small, launch::ReduceOp::kSum); });
  if (world.rank() == 0) {
    nlohmann::json out = {{"ranks", world.size()}, {"batch_per_rank", batch}, {"reps", reps},
                          {"all_gather_520B_us", 1e6 * gather_s}, {"all_reduce_520B_us", 1e6 * reduce_s}};
    for (size_t v = 0; v < variants.size(); ++v) {
      const auto& stats = steppers[v]->reducer().stats();
      out[variants[v].name] = {{"step_ms", 1e3 * step_ms[v]},
                               {"buckets", steppers[v]->reducer().buckets().size()},
                               {"held_back_in_warmup", held_back[v]},
                               {"held_back_per_step",
                                static_cast<double>(stats.buckets_held_back - held_back[v]) / static_cast<double>(reps)},
                               {"grad_bytes_per_step", stats.bytes / std::max<int64_t>(1, stats.syncs)}};
    }
    std::cout << out.dump() << "\n";
  }
  return 0;
}
