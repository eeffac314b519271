// The gradient reducer's cost, under mpirun (2 ranks, 1 thread each). Driven by
// bench/reducer_bench.sh; prints one JSON line from rank 0.
//   mpirun -np 2 reducer_bench [--batch 64] [--reps 200] [--bucket_mb 25]
//
// 1. Communication alone: the student's gradients (cnn_small) through GradReducer
//    (buckets that hold the .grad tensors, hooks, MPI_Iallreduce on the progress thread and a
//    blocking MPI_Allreduce for the last bucket) vs one
//    raw MPI_Allreduce of the same bytes in one buffer (and, to separate the library's
//    non-blocking algorithm from our overhead, a raw MPI_Iallreduce + MPI_Wait). Each is
//    measured in the same step, on a backward whose compute is small (loss = sum(p * c)):
//    t(backward + communication + zero_grad) minus t(the same step without communication).
// 2. Overlap: a real forward + backward of the student on `batch` samples per rank, with
//    the buckets all-reduced from the hooks while backward runs (what the trainer does), vs
//    backward first and then the same buckets all-reduced, vs backward alone (interleaved):
//    hidden share = (t_after - t_overlap) / (t_after - t_alone), clamped to [0, 1].
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <numeric>
#include <random>
#include <nlohmann/json.hpp>
#include <string>

#include "bench/mpi_bench.h"
#include "launch/communicator.h"
#include "launch/mpi_communicator.h"
#include "launch/world.h"
#include "models/models.h"
#include "trainer/grad_reducer.h"
#include "trainer/trainer.h"

using namespace retort;

int main(int argc, char** argv) {
  const auto flags = bench::read_flags(argc, argv, {"--batch", "--reps", "--bucket_mb"}, "reducer_bench");
  const int64_t batch = flags.count("--batch") ? std::stoll(flags.at("--batch")) : 64;
  const int reps = flags.count("--reps") ? std::stoi(flags.at("--reps")) : 200;
  const double bucket_mb = flags.count("--bucket_mb") ? std::stod(flags.at("--bucket_mb")) : 25.0;
  const auto world_ptr = bench::peer_world("reducer_bench");
  launch::World& world = *world_ptr;
  trainer::set_threads(1);
  torch::manual_seed(0);
  auto model = models::make_model(bench::student_options());
  model->train();
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (auto& kv : model->named_parameters()) params.emplace_back(kv.key(), kv.value());
  int64_t numel = 0;
  for (auto& kv : params) numel += kv.second.numel();

  std::shared_ptr<launch::Communicator> comm = std::make_shared<launch::MpiCommunicator>(world);
  trainer::GradReducerOptions ro;
  ro.bucket_mb = bucket_mb;
  trainer::GradReducer reducer(params, comm, ro);
  std::vector<torch::Tensor> consts;
  for (auto& kv : params) consts.push_back(torch::randn_like(kv.second));
  auto cheap_backward = [&] {
    auto loss = torch::zeros({});
    for (size_t i = 0; i < params.size(); ++i) loss = loss + (params[i].second * consts[i]).sum();
    loss.backward();
  };
  // The trainer clears gradients with the reducer's zero_grad() (a fill per bucket), so
  // gradients stay in the reducer's buckets from step to step.
  auto zero = [&] { reducer.zero_grad(); };

  // One step: backward (the hooks communicating or not), finish, `after` (communication
  // done after backward, for the baselines), clear the gradients.
  auto reducer_step = [&](bool sync, const std::function<void()>& backward, const std::function<void()>& after) {
    reducer.set_sync(sync);
    backward();
    reducer.finish();
    if (after) after();
    zero();
  };

  // --- 1. communication alone ----------------------------------------------------------
  // Every variant runs inside the same step (cheap backward, then its communication, then
  // zero_grad), interleaved with the others (interleaved_medians). A collective right
  // after compute costs more than one in a tight loop (colder caches; measured ~130 vs ~85
  // us for these bytes), and on gradients backward has just written more than on an idle
  // buffer: so the raw calls reduce the gradients themselves where they are one buffer
  // (one bucket: the reducer keeps every .grad in it), like for like.
  std::vector<float> flat(static_cast<size_t>(numel), 1.0f);
  float* raw_data = flat.data();
  auto flat_tensor = torch::from_blob(raw_data, {numel});
  const int kVariants = 5;  // 0 no communication, 1 reducer, 2 raw, 3 raw non-blocking, 4 communicator
  auto run_variant = [&](int v) {
    reducer_step(v == 1, cheap_backward, [&] {
      if (v == 2)
        MPI_Allreduce(MPI_IN_PLACE, raw_data, static_cast<int>(numel), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      if (v == 3) {  // the non-blocking call alone: the library's algorithm, not our overhead
        MPI_Request req;
        MPI_Iallreduce(MPI_IN_PLACE, raw_data, static_cast<int>(numel), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                       &req);
        MPI_Wait(&req, MPI_STATUS_IGNORE);
      }
      if (v == 4) comm->all_reduce(flat_tensor, launch::ReduceOp::kSum);  // our blocking path, no hooks
    });
  };
  for (int i = 0; i < 10; ++i)
    for (int v = 0; v < kVariants; ++v) run_variant(v);  // warm-up: MPI connections, allocator
  const bool on_grads = reducer.buckets().size() == 1;
  if (on_grads) {  // the .grad tensors are slots of the bucket's buffer by now
    raw_data = static_cast<float*>(params.front().second.grad().storage().data_ptr().get());
    flat_tensor = torch::from_blob(raw_data, {numel});
  }
  std::mt19937 order_rng(12345);
  const std::vector<double> med = bench::interleaved_medians(kVariants, reps, order_rng, run_variant);
  const double t_local = med[0];
  const double t_reducer = std::max(0.0, med[1] - t_local);
  const double t_raw = std::max(0.0, med[2] - t_local);
  const double t_raw_nb = std::max(0.0, med[3] - t_local);
  const double t_comm = std::max(0.0, med[4] - t_local);
  // The same raw call in a tight loop (hot caches): the library's best case.
  const double t_raw_hot = bench::median_time(reps, [&] {
    MPI_Allreduce(MPI_IN_PLACE, flat.data(), static_cast<int>(flat.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  });

  // --- 2. overlap with a real backward -------------------------------------------------
  auto x = torch::randn({batch, 1, 28, 28});
  auto y = torch::randint(0, 10, {batch}, torch::kInt64);
  auto real_backward = [&] { torch::nn::functional::cross_entropy(model->forward(x).logits, y).backward(); };
  for (int i = 0; i < 5; ++i) reducer_step(true, real_backward, nullptr);
  // The buckets' buffers (the .grad tensors are their slots by now), for the "after" variant.
  std::vector<torch::Tensor> bucket_buffers;
  for (const auto& b : reducer.buckets())
    bucket_buffers.push_back(torch::from_blob(params[b.params.front()].second.grad().storage().data_ptr().get(), {b.numel}));
  // Interleaved and shuffled as above: 0 backward with the hooks' all-reduces (what the
  // trainer does), 1 backward alone, 2 backward, then the same buckets all-reduced.
  const int step_reps = std::max(20, reps / 4);
  const std::vector<double> step_med = bench::interleaved_medians(3, step_reps, order_rng, [&](int v) {
    reducer_step(v == 0, real_backward, [&] {
      if (v == 2)
        for (auto& buffer : bucket_buffers) comm->all_reduce(buffer, launch::ReduceOp::kSum);
    });
  });
  const double t_overlap = step_med[0], t_compute = step_med[1], t_after = step_med[2];
  const double t_exposed_after = t_after - t_compute;  // communication when nothing hides it
  const double hidden =
      t_exposed_after > 0 ? std::clamp((t_after - t_overlap) / t_exposed_after, 0.0, 1.0) : 0.0;

  if (world.rank() == 0) {
    std::cout << nlohmann::json{{"ranks", world.size()},
                                {"params", numel},
                                {"bytes", numel * 4},
                                {"buckets", reducer.buckets().size()},
                                {"bucket_mb", bucket_mb},
                                {"reducer_us", 1e6 * t_reducer},
                                {"raw_allreduce_us", 1e6 * t_raw},
                                {"reducer_vs_raw", t_reducer / t_raw},
                                {"raw_iallreduce_us", 1e6 * t_raw_nb},
                                {"communicator_us", 1e6 * t_comm},
                                {"raw_allreduce_hot_loop_us", 1e6 * t_raw_hot},
                                {"raw_on_gradients", on_grads},
                                {"batch_per_rank", batch},
                                {"step_overlap_ms", 1e3 * t_overlap},
                                {"step_compute_ms", 1e3 * t_compute},
                                {"step_after_ms", 1e3 * t_after},
                                {"hidden_share", hidden}}
                     .dump()
              << "\n";
  }
  return 0;
}
