#pragma once
// What the MPI benchmarks (reducer_bench, ddp_bench) share: their flags, the student model,
// and times taken as the slowest rank's, variants interleaved in a shuffled order.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "launch/world.h"
#include "models/model.h"

namespace retort::bench {

/// "--name value" pairs of argv; an unknown name or a missing value ends the program with
/// exit code 2 and the known names.
inline std::map<std::string, std::string> read_flags(int argc, char** argv, const std::vector<std::string>& known,
                                                     const char* program) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; i += 2) {
    const std::string name = argv[i];
    if (i + 1 >= argc || std::find(known.begin(), known.end(), name) == known.end()) {
      std::cerr << program << ": unknown option or missing value '" << name << "' (options:";
      for (const auto& k : known) std::cerr << " " << k << " VALUE";
      std::cerr << ")\n";
      std::exit(2);
    }
    flags[name] = argv[i + 1];
  }
  return flags;
}

/// The world of an MPI benchmark; ends the program with exit code 2 unless it runs under
/// mpirun with 2 or more ranks.
inline std::unique_ptr<launch::World> peer_world(const char* program) {
  auto world = std::make_unique<launch::World>();
  if (world->size() < 2) {
    std::cerr << program << ": run under mpirun with 2 or more ranks\n";
    std::exit(2);
  }
  return world;
}

/// recipes/model/cnn_small.yaml: the student the data-parallel figures are measured on.
inline models::ModelOptions student_options() {
  models::ModelOptions o;
  o.channels = {16, 32};
  o.convs_per_stage = 1;
  o.hidden = {64};
  return o;
}

inline double median(std::vector<double> values) {
  std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
  return values[values.size() / 2];
}

/// Median of per-repetition times, each the slowest rank's (MPI_MAX), in seconds.
template <typename F>
double median_time(int reps, F&& body) {
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    body();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    times.push_back(dt);
  }
  return median(std::move(times));
}

/// Runs variants 0..n-1 `reps` times each, in a fresh shuffled order every rep (the same
/// on every rank: the collectives must match), so that drift hits them alike and no
/// variant always follows the same one; returns each variant's median time.
inline std::vector<double> interleaved_medians(int n, int reps, std::mt19937& rng,
                                               const std::function<void(int)>& run) {
  std::vector<std::vector<double>> times(n);
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (int i = 0; i < reps; ++i) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int v : order) times[v].push_back(median_time(1, [&] { run(v); }));
  }
  std::vector<double> medians;
  for (auto& t : times) medians.push_back(median(std::move(t)));
  return medians;
}

}  // namespace retort::bench
