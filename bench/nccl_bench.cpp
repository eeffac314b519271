// retort's NCCL all-reduce (launch::NcclCommunicator: its own stream ordered after the
// caller's by events, the caching allocator told of the tensor, a watchdog thread) vs
// ncclAllReduce called directly on the same buffer and stream order, in a world of one GPU
// (NCCL refuses two ranks on one device). What is measured is the wrapper's cost per
// collective; the reduction itself is the same NCCL call. Prints one JSON line per size.
//   nccl_bench [--mb 1,25,256] [--iters 200]
// Built only with CUDA + NCCL (RETORT_HAVE_CUDA).
#include <cuda_runtime.h>
#include <nccl.h>
#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "launch/communicator.h"
#include "launch/cuda_compat.h"
#include "launch/world.h"

using namespace retort;

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string(what) + ": " + ncclGetErrorString(r));
}

std::vector<double> list(const std::string& s) {
  std::vector<double> out;
  for (size_t i = 0; i < s.size();) {
    const size_t j = s.find(',', i);
    out.push_back(std::stod(s.substr(i, j - i)));
    i = j == std::string::npos ? s.size() : j + 1;
  }
  return out;
}

/// Seconds per call of `body` over `iters` calls, the device drained before and after.
template <typename F>
double time_per_call(int iters, F&& body) {
  for (int i = 0; i < 10; ++i) body();  // warm-up
  torch::cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) body();
  torch::cuda::synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

}  // namespace

int main(int argc, char** argv) {
  std::string sizes = "1,25,256";
  int iters = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--mb") sizes = v;
    else if (k == "--iters") iters = std::stoi(v);
    else {
      std::cerr << "unknown option " << k << " (--mb LIST, --iters N)\n";
      return 2;
    }
  }
  if (!torch::cuda::is_available()) {
    std::cerr << "nccl_bench: no CUDA device is visible\n";
    return 2;
  }
  const torch::Device gpu(torch::kCUDA, 0);
  launch::World world(launch::LaunchInfo{false, "nccl_bench"});
  launch::CommOptions o;
  o.backend = "nccl";
  auto comm = launch::make_communicator(world, gpu, o);

  ncclUniqueId id;
  check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  ncclComm_t raw = nullptr;
  check_nccl(ncclCommInitRank(&raw, 1, id, 0), "ncclCommInitRank");
  int version = 0;
  check_nccl(ncclGetVersion(&version), "ncclGetVersion");

  for (double mb : list(sizes)) {
    const auto n = static_cast<int64_t>(mb * 1048576.0 / sizeof(float));
    auto t = torch::ones({n}, torch::TensorOptions().device(gpu));
    // retort: what the gradient reducer does per bucket (async, then the stream waits).
    const double ours = time_per_call(iters, [&] { comm->all_reduce_async(t, launch::ReduceOp::kSum)->wait(); });
    // NCCL directly, on the current stream (no second stream, no events, no watchdog).
    const cudaStream_t stream = launch::compat::current_stream(0).stream();
    const double direct = time_per_call(iters, [&] {
      check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(n), ncclFloat, ncclSum, raw, stream),
                 "ncclAllReduce");
    });
    check_cuda(cudaGetLastError(), "after the timed loops");
    std::cout << nlohmann::json{{"mb", mb},
                                {"iters", iters},
                                {"nccl_version", version},
                                {"retort_us", ours * 1e6},
                                {"direct_us", direct * 1e6},
                                {"retort_over_direct", ours / direct}}
                     .dump()
              << "\n";
  }
  ncclCommDestroy(raw);
}
