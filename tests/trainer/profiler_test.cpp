#include "trainer/profiler.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tests/common/synthetic.h"
#include "tests/common/temp_dir.h"
#include "tests/trainer/setup.h"
#include "trainer/trainer.h"

namespace fs = std::filesystem;
using namespace retort;
using namespace retort::trainer;
using retort::test::TempDir;

namespace {

const ProfiledOp* find_op(const std::vector<ProfiledOp>& ops, const std::string& name) {
  for (const auto& op : ops)
    if (op.name == name) return &op;
  return nullptr;
}

// Calls of each complete event ("ph": "X") of a Chrome trace, by name.
std::map<std::string, int> trace_calls(const fs::path& path) {
  std::ifstream in(path);
  auto trace = nlohmann::json::parse(in);
  std::map<std::string, int> calls;
  for (const auto& e : trace.at("traceEvents"))
    if (e.at("ph") == "X") {
      EXPECT_GE(e.at("dur").get<double>(), 0.0);
      ++calls[e.at("name").get<std::string>()];
    }
  return calls;
}

// `steps` steps of the tiny CNN into `dir`, with trainer.profile and profile_warmup.
void train_tiny_cnn(const fs::path& dir, int64_t steps, int64_t profile, int64_t warmup) {
  auto s = test::quiet_setup(dir, std::make_shared<SupervisedTask>(models::make_model(test::tiny_cnn())),
                             test::band_dataset(256, 3), steps, 7);
  s.trainer.profile = profile;
  s.trainer.profile_warmup = warmup;
  s.trainer.log_every = 1;
  Trainer(std::move(s)).fit();
}

}  // namespace

TEST(Profiler, SumsEachOpWithItsSelfTimeAndPutsThePhasesFirst) {
  auto a = torch::randn({256, 256});
  Profiler profiler(torch::kCPU);
  for (int i = 0; i < 3; ++i) {
    RETORT_PHASE("forward");
    auto b = torch::mm(a, a);
    auto c = torch::relu(b);
  }
  const auto ops = profiler.stop().ops();
  ASSERT_FALSE(ops.empty());
  EXPECT_EQ(ops.front().name, "retort::forward");
  EXPECT_TRUE(ops.front().phase);
  EXPECT_EQ(ops.front().phase_name(), "forward");
  EXPECT_EQ(ops.front().calls, 3);
  const auto* mm = find_op(ops, "aten::mm");
  const auto* relu = find_op(ops, "aten::relu");
  ASSERT_NE(mm, nullptr);
  ASSERT_NE(relu, nullptr);
  EXPECT_EQ(mm->calls, 3);
  EXPECT_FALSE(mm->phase);
  EXPECT_GT(mm->total_ms, 0.0);
  // The phase encloses both ops: its self time is its total less theirs.
  EXPECT_LE(ops.front().self_ms, ops.front().total_ms - mm->total_ms - relu->total_ms + 1e-3);
  EXPECT_GE(ops.front().total_ms, mm->total_ms + relu->total_ms - 1e-3);
  // Ops after the phases, by self time: a 256^3 product outweighs the relu.
  for (size_t i = 2; i < ops.size(); ++i)
    if (!ops[i - 1].phase) EXPECT_GE(ops[i - 1].self_ms, ops[i].self_ms);
}

TEST(Profiler, WritesEveryCallToAChromeTrace) {
  const TempDir d("profiler-trace");
  auto a = torch::randn({64, 64});
  Profiler profiler(torch::kCPU);
  for (int i = 0; i < 2; ++i) {
    RETORT_PHASE("step");
    a = torch::mm(a, a).tanh();
  }
  const auto profile = profiler.stop();
  profile.write_chrome_trace((d / "trace.json").string());
  const auto calls = trace_calls(d / "trace.json");
  EXPECT_EQ(calls.at("retort::step"), 2);
  EXPECT_EQ(calls.at("aten::mm"), 2);
  EXPECT_EQ(calls.at("aten::tanh"), 2);
}

TEST(Profiler, OnlyOneRunsAtATime) {
  Profiler first(torch::kCPU);
  EXPECT_THROW(Profiler second(torch::kCPU), Error);
  first.stop();
  EXPECT_THROW(first.stop(), Error);
  Profiler again(torch::kCPU);  // the first one's stop freed LibTorch's profiler
}

TEST(Trainer, ProfilesTheStepsAskedForAfterTheWarmUp) {
  const TempDir d("profile-run");
  train_tiny_cnn(d, 8, 2, 3);
  const auto calls = trace_calls(d / "trace-rank0.json");
  for (const char* phase : {"data", "forward", "backward", "reduce", "unscale", "step", "metrics"})
    EXPECT_EQ(calls.at(std::string("retort::") + phase), 2) << phase;  // steps 4 and 5
  EXPECT_EQ(calls.at("aten::conv2d"), 4);                              // 2 convolutions a forward
}

TEST(Trainer, AProfileCutShortByTheRunsEndIsStillWritten) {
  const TempDir d("profile-short");
  train_tiny_cnn(d, 4, 10, 1);
  EXPECT_EQ(trace_calls(d / "trace-rank0.json").at("retort::forward"), 3);  // steps 2 to 4

  const TempDir off("profile-off");
  train_tiny_cnn(off, 2, 0, 5);
  EXPECT_FALSE(fs::exists(off / "trace-rank0.json"));
}
