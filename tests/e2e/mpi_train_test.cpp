// `mpirun -np 2 retort train ...` as a user runs it: one run, the same model as one
// process, a config mismatch named by key, preemption by SIGTERM and resume.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/fs.h"
#include "tests/common/safetensors_f32.h"
#include "tests/common/shell.h"
#include "tests/common/temp_dir.h"
#include "tests/e2e/helpers.h"

using retort::test::TempDir;

namespace fs = std::filesystem;

namespace {

using retort::test::has_dataset;
using retort::test::max_relative_diff;
using retort::test::read_f32_tensors;
using retort::test::run_shell;

const std::string kMpirun = std::string(RETORT_MPIEXEC) + " --allow-run-as-root --oversubscribe";
const std::string kIn = std::string("cd ") + RETORT_SOURCE_DIR + " && ";

std::string train(const std::string& args) { return std::string(RETORT_BIN) + " train recipes/fmnist/default.yaml " + args; }

const std::string kSmall =
    "model=mlp optim=sgd optim.lr=0.05 data.subset=640 data.batch_size=64 trainer.threads=1 trainer.eval=false "
    "trainer.device=cpu ";  // CPU ranks over MPI, also where one GPU is visible

/// The "loss" of the last eval record of a run's metrics.jsonl (-1 if none).
double logged_eval_loss(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  double loss = -1;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("kind", "") == "eval") loss = j.at("loss").get<double>();
  }
  return loss;
}

}  // namespace

// The student recipe (a CNN with batch norm) as a user runs it: global batches do not
// depend on the world size and batch norm's statistics span both ranks, so 2 ranks train
// the weights one process trains, up to float reduction order (without
// ddp.sync_batchnorm the ranks' own statistics make a difference 100x larger). The 2-rank
// run's logged evaluation is `retort eval` of the checkpoint it saved. 20 steps: beyond
// them AdamW amplifies reduction-order noise alike in one process run on 1 or 2 threads
// (bench/RESULTS.md, "Data parallel equals one process").
TEST(MpiTrain, TwoRanksTrainTheStudentOneProcessTrains) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir one("one", false), two("two", false), local("local-bn", false);
  const std::string student = std::string(RETORT_BIN) + " train recipes/fmnist/student.yaml trainer.max_steps=20 "
                              "trainer.device=cpu data.subset=4000 ";
  auto r1 = run_shell(kIn + student + "trainer.eval=false run.dir=" + one.string());
  ASSERT_EQ(r1.code, 0) << r1.out;
  auto r2 = run_shell(kIn + kMpirun + " -np 2 " + student + "run.dir=" + two.string());
  ASSERT_EQ(r2.code, 0) << r2.out;
  EXPECT_NE(r2.out.find("2 rank(s)"), std::string::npos) << r2.out;
  auto r3 = run_shell(kIn + kMpirun + " -np 2 " + student + "trainer.eval=false ddp.sync_batchnorm=false run.dir=" +
                      local.string());
  ASSERT_EQ(r3.code, 0) << r3.out;

  // One run directory: only rank 0 wrote checkpoints and metrics.
  const auto ckpt = fs::path("checkpoints") / "step-00000020" / "model.safetensors";
  const auto a = read_f32_tensors(one / ckpt), b = read_f32_tensors(two / ckpt), c = read_f32_tensors(local / ckpt);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  EXPECT_LT(max_relative_diff(b, a), 1e-4) << "2 ranks vs 1 process";
  EXPECT_GT(max_relative_diff(c, a), 1e-3) << "per-rank batch norm statistics differ from the whole batch's";

  const double logged = logged_eval_loss(two);
  ASSERT_GT(logged, 0) << "no eval record";
  auto eval = run_shell(kIn + std::string(RETORT_BIN) + " eval " + two.string());
  ASSERT_EQ(eval.code, 0) << eval.out;
  const auto at = eval.out.find("test loss ");
  ASSERT_NE(at, std::string::npos) << eval.out;
  EXPECT_NEAR(std::stod(eval.out.substr(at + 10)), logged, 1e-6) << eval.out;
}

// A language model: 2 ranks train the same gpt as one process (token windows, tied
// embeddings, the reducer's buckets), fp32, to the same tolerance as the CNN.
TEST(MpiTrain, TwoRanksTrainTheLanguageModelOneProcessTrains) {
  const TempDir dir("lm", false);
  auto t = run_shell(kIn + std::string(RETORT_BIN) + " tokenize README.md " + (dir / "tokens").string());
  ASSERT_EQ(t.code, 0) << t.out;
  const std::string lm = std::string(RETORT_BIN) + " train recipes/text/lm_student.yaml model.context=32 "
                         "model.dim=32 model.depth=2 model.heads=2 data.batch_size=16 trainer.max_steps=10 "
                         "trainer.threads=1 trainer.eval=false trainer.device=cpu amp.mode=off data.root=" +
                         (dir / "tokens").string() + " run.dir=";
  auto one = run_shell(kIn + lm + (dir / "one").string());
  ASSERT_EQ(one.code, 0) << one.out;
  auto two = run_shell(kIn + kMpirun + " -np 2 " + lm + (dir / "two").string());
  ASSERT_EQ(two.code, 0) << two.out;
  const auto ckpt = fs::path("checkpoints") / "step-00000010" / "model.safetensors";
  const auto a = read_f32_tensors(dir / "one" / ckpt), b = read_f32_tensors(dir / "two" / ckpt);
  ASSERT_FALSE(a.empty());
  EXPECT_LT(max_relative_diff(b, a), 1e-4) << "2 ranks vs 1 process";
}

// Ranks started with different command lines: the job stops before creating anything,
// naming the key and both values.
TEST(MpiTrain, ConfigMismatchNamesTheKeyAndCreatesNothing) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir dir("mismatch", false);
  const std::string common = kSmall + "trainer.max_steps=2 run.dir=" + dir.string();
  auto r = run_shell(kIn + kMpirun + " -np 1 " + train(common + " trainer.seed=1") + " : -np 1 " +
                     train(common + " trainer.seed=2"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("config differs from rank 0's at 'trainer.seed': rank 0 has 1, rank 1 has 2"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir)) << "nothing created";
}

// Preemption: SIGTERM to one rank (as a scheduler signals a job's processes) makes every
// rank finish the same step, rank 0 writes one checkpoint, the job exits 5 (stopped), and
// trainer.resume=auto continues from it.
TEST(MpiTrain, SigtermOnOneRankCheckpointsAndResumeContinues) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir dir("sigterm", false);
  // Checkpoints only when stopped (and at the end), so the stop's is the only one.
  const std::string ckpt = "trainer.checkpoint_every=100000 ";
  const std::string args = kSmall + ckpt + "trainer.max_epochs=1000 trainer.log_every=1 run.dir=" + dir.string();
  auto job = std::async(std::launch::async, [&] { return run_shell(kIn + kMpirun + " -np 2 " + train(args)); });

  // Wait for training steps, then signal the rank-1 process only.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool stepping = false;
  while (!stepping && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::ifstream metrics(dir / "metrics.jsonl");
    std::string line;
    int lines = 0;
    while (std::getline(metrics, line)) ++lines;
    stepping = lines >= 3;
  }
  ASSERT_TRUE(stepping) << "no training steps within 60 s";
  auto pids = run_shell("for p in $(pgrep -f 'run.dir=" + dir.string() +
                        "'); do if tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then "
                        "echo $p; fi; done");
  ASSERT_EQ(pids.code, 0) << pids.out;
  const int pid = std::atoi(pids.out.c_str());
  ASSERT_GT(pid, 0) << "rank 1 not found: " << pids.out;
  ASSERT_EQ(::kill(pid, SIGTERM), 0);

  ASSERT_EQ(job.wait_for(std::chrono::seconds(60)), std::future_status::ready) << "the job did not stop";
  const auto r = job.get();
  ASSERT_EQ(r.code, 5) << r.out;
  EXPECT_NE(r.out.find("stop requested: writing a checkpoint at step"), std::string::npos) << r.out;
  int checkpoints = 0;
  std::string last;
  for (const auto& e : fs::directory_iterator(dir / "checkpoints")) {
    ++checkpoints;
    last = std::max(last, e.path().filename().string());
  }
  ASSERT_EQ(checkpoints, 1) << "one checkpoint, from rank 0";
  const long step = std::stol(last.substr(std::strlen("step-")));

  auto resumed = run_shell(kIn + kMpirun + " -np 2 " +
                           train(kSmall + ckpt + "trainer.max_epochs=1000 trainer.resume=auto trainer.max_steps=" +
                                 std::to_string(step + 3) + " run.dir=" + dir.string()));
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resumed from"), std::string::npos) << resumed.out;
  char name[32];
  std::snprintf(name, sizeof name, "step-%08ld", step + 3);
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / name)) << resumed.out;
}

// Distilling a language model on 2 ranks trains the student one process trains, from the
// live teacher and from a teacher cache (a batch's blocks reach each rank's cache lookup).
TEST(MpiTrain, TwoRanksDistillALanguageModelAsOneProcessLiveAndFromACache) {
  const TempDir dir("mpi-lm-distill", false);
  const std::string bin = std::string(RETORT_BIN), tokens = (dir / "tokens").string(),
                    teacher = (dir / "teacher").string();
  ASSERT_EQ(run_shell(kIn + bin + " tokenize README.md " + tokens).code, 0);
  const std::string data = " data.root=" + tokens + " data.subset=128 data.batch_size=16 trainer.threads=1 "
                           "trainer.device=cpu trainer.eval=false amp.mode=off data.windows=blocks model.context=32 ";
  auto t = run_shell(kIn + bin + " train recipes/text/lm_teacher.yaml" + data +
                     "model.dim=32 model.depth=2 model.heads=2 trainer.max_steps=6 run.dir=" + teacher);
  ASSERT_EQ(t.code, 0) << t.out;
  const std::string distill = " train recipes/text/lm_distill.yaml" + data +
                              "model.dim=16 model.depth=1 model.heads=2 trainer.max_steps=8 "
                              "distill.weights.reverse_kl=0.25 distill.teacher.checkpoint=" + teacher + " ";
  const std::string cache = "distill.cache.dir=" + (dir / "cache").string() + " distill.cache.top_k=16 ";
  auto made = run_shell(kIn + bin + " cache-teacher" + distill.substr(6) + cache);
  ASSERT_EQ(made.code, 0) << made.out;
  const auto ckpt = fs::path("checkpoints") / "step-00000008" / "model.safetensors";
  for (const std::string& source : {std::string(), cache}) {
    const std::string name = source.empty() ? "live" : "cache";
    const fs::path one = dir / (name + "-1"), two = dir / (name + "-2");
    auto r1 = run_shell(kIn + bin + distill + source + " run.dir=" + one.string());
    ASSERT_EQ(r1.code, 0) << r1.out;
    auto r2 = run_shell(kIn + kMpirun + " -np 2 " + bin + distill + source + " run.dir=" + two.string());
    ASSERT_EQ(r2.code, 0) << r2.out;
    EXPECT_NE(r2.out.find("2 rank(s)"), std::string::npos) << r2.out;
    const auto a = read_f32_tensors(one / ckpt), b = read_f32_tensors(two / ckpt);
    ASSERT_FALSE(a.empty());
    EXPECT_LT(max_relative_diff(b, a), 1e-4) << name << ": 2 ranks vs 1 process";
  }
}
