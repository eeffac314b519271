#include <gtest/gtest.h>
#include <torch/torch.h>

#include <csignal>
#include <map>

#include "core/error.h"
#include "launch/communicator.h"
#include "launch/world.h"
#include "tests/common/expect.h"

using retort::test::expect_error;

using namespace retort;
using namespace retort::launch;

namespace {

LaunchInfo detect(std::map<std::string, std::string> env) {
  return detect_launcher([env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}

LaunchInfo single() { return {false, "test"}; }

}  // namespace

// ------------------------------------------------------------------------------------
// Launcher detection
// ------------------------------------------------------------------------------------

TEST(DetectLauncher, NoLauncherVariablesMeansOneProcessWithoutMpi) {
  auto info = detect({{"HOME", "/root"}});
  EXPECT_FALSE(info.use_mpi);
  EXPECT_EQ(info.reason, "no MPI launcher variables");
}

TEST(DetectLauncher, EachLauncherIsRecognisedAndNamed) {
  for (std::string var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MV2_COMM_WORLD_RANK"}) {
    auto info = detect({{var, "3"}});
    EXPECT_TRUE(info.use_mpi) << var;
    EXPECT_EQ(info.reason, var + "=3");
  }
}

TEST(DetectLauncher, SrunWithPmixIsMpi) {
  auto info = detect({{"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "4"}, {"PMIX_RANK", "1"}});
  EXPECT_TRUE(info.use_mpi);
}

TEST(DetectLauncher, SlurmStepOfSeveralTasksWithoutPmiIsAnError) {
  expect_error<UsageError>([] { detect({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "4"}}); },
                           {"SLURM_STEP_NUM_TASKS=4", "srun --mpi=pmix", "RETORT_LAUNCHER=local"});
}

TEST(DetectLauncher, SlurmBatchStepOfOneTaskIsASingleProcess) {
  EXPECT_FALSE(detect({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "1"}}).use_mpi);
}

TEST(DetectLauncher, OverrideWinsBothWays) {
  EXPECT_FALSE(detect({{"RETORT_LAUNCHER", "local"}, {"OMPI_COMM_WORLD_SIZE", "2"}}).use_mpi);
  auto forced = detect({{"RETORT_LAUNCHER", "mpi"}});
  EXPECT_TRUE(forced.use_mpi);
  EXPECT_EQ(forced.reason, "RETORT_LAUNCHER=mpi");
}

TEST(DetectLauncher, BadOverrideNamesValueAndChoices) {
  expect_error<UsageError>([] { detect({{"RETORT_LAUNCHER", "slurm"}}); }, {"RETORT_LAUNCHER='slurm'", "mpi, local"});
}

// ------------------------------------------------------------------------------------
// World in a singleton process
// ------------------------------------------------------------------------------------

TEST(World, SingletonIsRankZeroOfOneWithoutMpi) {
  World world(single());
  EXPECT_EQ(world.rank(), 0);
  EXPECT_EQ(world.size(), 1);
  EXPECT_EQ(world.local_rank(), 0);
  EXPECT_EQ(world.local_size(), 1);
  EXPECT_FALSE(world.uses_mpi());
  EXPECT_FALSE(world.hostname().empty());
  EXPECT_EQ(world.hosts(), std::vector<std::string>{world.hostname()});
  EXPECT_EQ(World::current(), &world);
}

TEST(World, DefaultConstructorUsesTheEnvironment) {
  if (detect_launcher().use_mpi) GTEST_SKIP() << "running under an MPI launcher";
  World world;
  EXPECT_EQ(world.size(), 1);
  EXPECT_FALSE(world.uses_mpi());
}

TEST(World, OnlyOnePerProcess) {
  World world(single());
  expect_error<Error>([] { World again(single()); }, {"already exists"});
  EXPECT_EQ(World::current(), &world);
}

TEST(World, PicksTheGpuOfItsLocalRankOrTheCpu) {
  World world(single());
  auto device = world.pick_device();
  if (torch::cuda::is_available())
    EXPECT_EQ(device, torch::Device(torch::kCUDA, 0));
  else
    EXPECT_EQ(device, torch::Device(torch::kCPU));
}

TEST(ChooseDevice, CpuAutoAndCudaWithAndWithoutGpus) {
  EXPECT_EQ(choose_device("cpu", 4, 0, 1, false, "h"), torch::Device(torch::kCPU));
  EXPECT_EQ(choose_device("auto", 0, 0, 1, false, "h"), torch::Device(torch::kCPU));
  EXPECT_EQ(choose_device("auto", 2, 1, 2, false, "h"), torch::Device(torch::kCUDA, 1));
  EXPECT_EQ(choose_device("cuda", 8, 3, 4, false, "h"), torch::Device(torch::kCUDA, 3));
  expect_error<UsageError>([] { choose_device("cuda", 0, 0, 1, false, "node7"); },
                           {"trainer.device=cuda", "no CUDA device", "node7"});
  expect_error<ConfigError>([] { choose_device("gpu", 1, 0, 1, false, "h"); }, {"trainer.device", "'gpu'"});
}

TEST(ChooseDevice, RanksNeverShareAGpuUnlessTheLauncherBoundOnePerRank) {
  // Two ranks, one GPU, no binding: both would land on cuda:0 and NCCL would refuse (seen
  // on a one-GPU machine). Every rank gets the same error, rank 0 included.
  for (int rank : {0, 1})
    expect_error<UsageError>([&] { choose_device("auto", 1, rank, 2, false, "gpu1"); },
                             {"2 ranks on gpu1", "1 GPU visible", "CUDA_VISIBLE_DEVICES", "trainer.device=cpu"});
  // srun --gpus-per-task=1: each rank sees its own single GPU as cuda:0.
  EXPECT_EQ(choose_device("auto", 1, 1, 2, true, "h"), torch::Device(torch::kCUDA, 0));
  expect_error<UsageError>([] { choose_device("auto", 2, 2, 3, true, "h"); }, {"3 ranks", "2 GPUs visible"});
  EXPECT_EQ(choose_device("cpu", 1, 1, 2, false, "h"), torch::Device(torch::kCPU));  // the way out
}

// ------------------------------------------------------------------------------------
// make_communicator
// ------------------------------------------------------------------------------------

TEST(MakeCommunicator, AutoInAWorldOfOneIsLocal) {
  World world(single());
  auto comm = make_communicator(world, torch::kCPU);
  EXPECT_EQ(comm->backend(), "local");
  CommOptions local;
  local.backend = "local";
  EXPECT_EQ(make_communicator(world, torch::kCPU, local)->size(), 1);
}

TEST(MakeCommunicator, MpiWithoutALauncherSaysWhy) {
  World world(single());
  CommOptions o;
  o.backend = "mpi";
#if RETORT_HAVE_MPI
  expect_error<CommError>([&] { make_communicator(world, torch::kCPU, o); }, {"MPI launcher", "test"});
#else
  expect_error<ConfigError>([&] { make_communicator(world, torch::kCPU, o); }, {"built without MPI"});
#endif
}

TEST(MakeCommunicator, NcclNeedsACudaDevice) {
  World world(single());
  CommOptions o;
  o.backend = "nccl";
  expect_error<ConfigError>([&] { make_communicator(world, torch::kCPU, o); }, {"ddp.backend=nccl", "cpu"});
}

TEST(MakeCommunicator, MpiRefusesCudaDevices) {
  World world(single());
  CommOptions o;
  o.backend = "mpi";
  expect_error<ConfigError>([&] { make_communicator(world, torch::Device(torch::kCUDA, 0), o); },
                            {"ddp.backend=mpi", "cuda:0"});
}

TEST(MakeCommunicator, UnknownBackendListsTheChoices) {
  World world(single());
  CommOptions o;
  o.backend = "gloo";
  expect_error<ConfigError>([&] { make_communicator(world, torch::kCPU, o); },
                            {"ddp.backend='gloo'", "auto, local, mpi, nccl"});
}

TEST(MakeCommunicator, TimeoutMustBePositive) {
  World world(single());
  CommOptions o;
  o.timeout_s = 0;
  expect_error<ConfigError>([&] { make_communicator(world, torch::kCPU, o); }, {"ddp.timeout_s", "> 0"});
}

// ------------------------------------------------------------------------------------
// Ending the job
// ------------------------------------------------------------------------------------

TEST(AbortAll, PrintsRankAndMessageAndExitsWithTheCode) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(abort_all(3, "data file truncated"), testing::ExitedWithCode(3), "\\[rank 0\\] data file truncated");
  EXPECT_EXIT(abort_all(0, "zero is not a failure code"), testing::ExitedWithCode(1), "zero is not");
}

TEST(RunGuarded, ReturnsTheBodysCode) {
  World world(single());
  EXPECT_EQ(run_guarded(world, [] { return 0; }), 0);
  EXPECT_EQ(run_guarded(world, [] { return 5; }), 5);
}

TEST(RunGuarded, InAWorldOfOneAnErrorIsPrintedAndItsExitCodeReturned) {
  World world(single());
  testing::internal::CaptureStderr();
  const int code = run_guarded(world, []() -> int { throw DataError("train-images: truncated at byte 16"); });
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, kExitData);
  EXPECT_NE(err.find("error: train-images: truncated at byte 16"), std::string::npos) << err;
}

TEST(RunGuarded, ForeignExceptionsExitWithOne) {
  World world(single());
  testing::internal::CaptureStderr();
  EXPECT_EQ(run_guarded(world, []() -> int { throw std::runtime_error("boom"); }), 1);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("error: boom"), std::string::npos);
  testing::internal::CaptureStderr();
  EXPECT_EQ(run_guarded(world, []() -> int { TORCH_CHECK(false, "torch says no"); }), 1);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("torch says no"), std::string::npos);
  EXPECT_EQ(err.find("Exception raised from"), std::string::npos) << "no C++ backtrace in the one line: " << err;
}

// ------------------------------------------------------------------------------------
// Stop signals
// ------------------------------------------------------------------------------------

TEST(StopSignals, TermSetsTheFlagInsteadOfKilling) {
  clear_stop_request();
  install_stop_handlers();
  EXPECT_FALSE(stop_requested());
  std::raise(SIGTERM);
  EXPECT_TRUE(stop_requested());
  EXPECT_EQ(stop_signal(), SIGTERM);
  clear_stop_request();
  EXPECT_FALSE(stop_requested());
  std::raise(SIGUSR1);
  EXPECT_TRUE(stop_requested());
  EXPECT_EQ(stop_signal(), SIGUSR1);
  clear_stop_request();
}

TEST(StopSignals, SecondInterruptKillsTheDefaultWay) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        clear_stop_request();
        install_stop_handlers();
        std::raise(SIGINT);
        if (!stop_requested()) std::_Exit(7);
        std::raise(SIGINT);
        std::_Exit(8);  // not reached
      },
      testing::KilledBySignal(SIGINT), "");
}

TEST(StopSignals, AnyRankStoppingInAWorldOfOneIsTheLocalFlag) {
  LocalCommunicator comm;
  clear_stop_request();
  EXPECT_FALSE(any_rank_stopping(comm));
  request_stop();
  EXPECT_TRUE(any_rank_stopping(comm));
  EXPECT_EQ(stop_signal(), 0);
  clear_stop_request();
}

TEST(RanksByHost, GroupsRanksPerHostInOrderOfTheirFirstRank) {
  EXPECT_EQ(ranks_by_host({"a", "a", "b", "b"}), "a: 0-1, b: 2-3");
  EXPECT_EQ(ranks_by_host({"a", "b", "a", "b", "a"}), "a: 0,2,4, b: 1,3");
  EXPECT_EQ(ranks_by_host({"b", "a", "a", "a", "b"}), "b: 0,4, a: 1-3");
  EXPECT_EQ(ranks_by_host({"only"}), "only: 0");
}
