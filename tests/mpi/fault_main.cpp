// Fault scenarios for the watchdog and abort paths, run by ctest under
// `mpirun -np 2` through run_fault.cmake, which checks exit code, output and time.
//   fault_main ok|throw|hang|kill|unused <target rank>
#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "core/error.h"
#include "launch/mpi_communicator.h"
#include "launch/world.h"
#include "trainer/grad_reducer.h"

using namespace retort;
using namespace retort::launch;

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl() {
    body = register_module("body", torch::nn::Linear(4, 4));
    extra = register_module("extra", torch::nn::Linear(4, 4));
  }
  torch::Tensor forward(const torch::Tensor& x, bool use_extra) {
    auto h = torch::relu(body(x));
    return use_extra ? extra(h) : h;
  }
  torch::nn::Linear body{nullptr}, extra{nullptr};
};
TORCH_MODULE(Net);

int scenario(World& world, const std::string& mode, int target) {
  MpiOptions options;
  options.timeout_s = mode == "hang" ? 3.0 : 60.0;
  auto comm = std::make_shared<MpiCommunicator>(world, options);
  const bool me = world.rank() == target;

  auto warm = torch::ones({16});
  comm->all_reduce(warm, ReduceOp::kSum);  // collective #1: everyone is up
  if (mode == "ok") {
    comm->barrier();
    std::printf("fault_main: ok rank %d sum %g\n", world.rank(), warm[0].item<double>());
    return 0;
  }
  if (mode == "throw") {
    if (me) throw DataError("injected failure on rank " + std::to_string(world.rank()));
    comm->barrier();  // would wait forever without abort_all
    return 0;
  }
  if (mode == "hang") {
    if (me) std::this_thread::sleep_for(std::chrono::seconds(60));
    auto t = torch::ones({1024});
    comm->all_reduce(t, ReduceOp::kSum);  // collective #2: the target never comes in time
    return 0;
  }
  if (mode == "kill") {
    if (me) std::raise(SIGKILL);
    comm->barrier();
    return 0;
  }
  if (mode == "unused") {
    torch::manual_seed(0);
    Net net;
    trainer::GradReducer reducer(net->named_parameters().pairs(), comm);
    net->forward(torch::randn({3, 4}), /*use_extra=*/!me).sum().backward();
    reducer.finish();  // the target throws; the other rank waits for the target's bucket
    return 0;
  }
  throw UsageError("fault_main: unknown mode '" + mode + "'");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fault_main ok|throw|hang|kill|unused <target rank>\n");
    return 2;
  }
  World world;
  return run_guarded(world, [&] { return scenario(world, argv[1], std::atoi(argv[2])); });
}
