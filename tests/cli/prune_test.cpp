// `retort prune` as a user runs it: a run directory in, a pruned run directory out (or a
// sensitivity table with --scan); prune.from for train; masks and compaction for export,
// and the ONNX graph export writes of a pruned run, run by ONNX Runtime.
#include <gtest/gtest.h>

#include <fstream>

#include "cli/commands.h"
#include "cli/prune.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/data.h"
#include "launch/world.h"
#include "tests/common/onnx.h"
#include "tests/prune/helpers.h"
#include "trainer/checkpoint.h"

using retort::test::TempDir;

namespace fs = std::filesystem;
using namespace retort;
using test::expect_error;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// A trained-looking run: a checkpoint of a small CNN with random weights and the config a
/// training run stores, its data a synthetic IDX train split (for --scan).
fs::path make_run(const fs::path& root) {
  const auto data = root / "data";
  fs::create_directories(data);
  torch::manual_seed(1);
  const int64_t n = 120;
  auto labels = torch::randint(0, 10, {n}, torch::kInt64);
  auto images = torch::randint(0, 255, {n, 28, 28}, torch::kInt64).to(torch::kUInt8);
  data::write_idx(data / "train-images-idx3-ubyte", images);
  data::write_idx(data / "train-labels-idx1-ubyte", labels.to(torch::kUInt8));

  const auto run = root / "trained";
  auto model = test::random_model(test::small_cnn(), 31);
  trainer::Checkpoint ckpt;
  ckpt.step = 40;
  ckpt.model = models::weights_of(*model);
  ckpt.config_yaml = "run:\n  dir: " + run.string() +
                     "\ntrainer:\n  threads: 1\nmodel:\n  name: cnn\n  channels: [4, 8]\n  convs_per_stage: 2\n"
                     "  hidden: [6]\ndata:\n  root: " + data.string() + "\n  eval_batch_size: 50\n";
  trainer::Checkpointer(run / "checkpoints", 3).save(ckpt);
  return run;
}

/// `retort <command> <args...>` in this process, errors thrown.
int run_command(const std::string& command, std::vector<std::string> args) {
  static launch::World world(launch::LaunchInfo{});
  args.insert(args.begin(), command);
  return cli::run_command_line(world, args);
}

int run_prune(std::vector<std::string> args) { return run_command("prune", std::move(args)); }

/// `retort export <args...>`; what it prints is kept out of the test log.
int run_export(std::vector<std::string> args) {
  testing::internal::CaptureStdout();
  try {
    const int code = run_command("export", std::move(args));
    testing::internal::GetCapturedStdout();
    return code;
  } catch (...) {
    testing::internal::GetCapturedStdout();
    throw;
  }
}

std::shared_ptr<models::Model> load_model(const fs::path& run) {
  auto start = cli::load_pruned_start(run.string());
  auto m = models::make_model(start.model);
  models::load_weights(*m, start.weights, "test");
  m->eval();
  return m;
}

}  // namespace

TEST(PruneCommand, StructuredWritesARunWithMasksAndATable) {
  const TempDir root("cli-structured");
  const auto src = make_run(root);
  const auto out = root / "pruned";
  testing::internal::CaptureStdout();
  ASSERT_EQ(run_prune({src.string(), "prune.method=l1_structured", "prune.sparsity=0.4", "run.dir=" + out.string()}), 0);
  const std::string printed = testing::internal::GetCapturedStdout();
  EXPECT_NE(printed.find("| layer | shape | weights | pruned | sparsity | channels kept |"), std::string::npos);
  EXPECT_NE(printed.find("| stage0.conv0 | 4x1x3x3 | 36 | 9 | 25.0 % | 3/4 |"), std::string::npos) << printed;
  EXPECT_NE(printed.find("| head | 10x"), std::string::npos);
  EXPECT_EQ(read_text(out / "prune.md").find("| layer |") != std::string::npos, true);

  auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(out));
  auto masks = prune::Masks::from_state_dict([&] {
    std::map<std::string, torch::Tensor> s;
    for (const auto& [k, v] : ckpt.state) s[k.substr(5)] = v;  // "task."
    return s;
  }());
  ASSERT_TRUE(masks.contains("stage0.conv0.weight"));
  EXPECT_TRUE(masks.contains("stage0.bn0.bias"));
  // The weights in the checkpoint are the masked ones; the config reads back.
  auto model = load_model(out);
  for (const auto& [name, m] : masks.tensors())
    EXPECT_TRUE(model->named_parameters()[name].masked_select(m.logical_not()).eq(0).all().item<bool>()) << name;
  auto rc = cli::read_run_config(YAML::LoadFile((out / "config" / "config.yaml").string()));
  EXPECT_EQ(rc.prune.method, "l1_structured");
  EXPECT_DOUBLE_EQ(rc.prune.sparsity, 0.4);
  EXPECT_EQ(rc.run.dir, out.string());

  // Export compacts a checkpoint with structured masks.
  const auto exported = cli::exported_model(ckpt);
  ASSERT_TRUE(exported.compaction.has_value());
  const auto& compacted = exported.compaction;
  EXPECT_EQ(compacted->options.conv_channels, (std::vector<int64_t>{3, 3, 5, 5}));
  EXPECT_EQ(exported.model->options().conv_channels, compacted->options.conv_channels);
  EXPECT_NE(compacted->model_yaml.find("conv_channels: [3, 3, 5, 5]"), std::string::npos) << compacted->model_yaml;
  EXPECT_LT(compacted->params_after, compacted->params_before);

  // prune.compact=true: a smaller model whose config rebuilds it, with the same outputs.
  const auto small = root / "compact";
  testing::internal::CaptureStdout();
  ASSERT_EQ(run_prune({src.string(), "prune.method=l1_structured", "prune.sparsity=0.4", "prune.compact=true",
                   "run.dir=" + small.string()}),
            0);
  EXPECT_NE(testing::internal::GetCapturedStdout().find("compacted: "), std::string::npos);
  auto small_model = load_model(small);
  EXPECT_EQ(small_model->options().conv_channels, (std::vector<int64_t>{3, 3, 5, 5}));
  EXPECT_EQ(models::count_parameters(*small_model), compacted->params_after);
  torch::NoGradGuard g;
  auto x = torch::randn({3, 1, 28, 28});
  EXPECT_LT((model->forward(x).logits - small_model->forward(x).logits).abs().max().item<double>(), 1e-5);

  // train's prune.from: the pruned run's model replaces the recipe's, masks come along.
  YAML::Node config = YAML::Load("model: {name: cnn, channels: [32, 64]}\nprune: {from: " + small.string() + "}\n");
  auto start = cli::resolve_prune_from(config);
  ASSERT_TRUE(start.has_value());
  EXPECT_EQ(config["model"]["conv_channels"].as<std::vector<int64_t>>(), (std::vector<int64_t>{3, 3, 5, 5}));
  EXPECT_EQ(cli::read_run_config(config).model.conv_channels, (std::vector<int64_t>{3, 3, 5, 5}));
  EXPECT_TRUE(start->masks.empty());  // purely structured and compacted: nothing left to mask
  YAML::Node from_masked = YAML::Load("prune: {from: " + out.string() + "}\n");
  EXPECT_EQ(cli::resolve_prune_from(from_masked)->masks.size(), masks.size());
  YAML::Node none = YAML::Load("prune: {from: ''}\n");
  EXPECT_FALSE(cli::resolve_prune_from(none).has_value());
}

TEST(PruneCommand, DefaultRunDirAndUnstructured) {
  const TempDir root("cli-default");
  const auto src = make_run(root);
  const auto cwd = fs::current_path();
  fs::current_path(root);
  testing::internal::CaptureStdout();
  const int rc = run_prune({src.string(), "prune.method=global_magnitude", "prune.sparsity=0.8"});
  const std::string printed = testing::internal::GetCapturedStdout();
  fs::current_path(cwd);
  ASSERT_EQ(rc, 0);
  int runs = 0;
  for (const auto& day : fs::directory_iterator(root / "outputs" / "prune"))
    for (const auto& time : fs::directory_iterator(day.path())) {
      ++runs;
      EXPECT_TRUE(trainer::Checkpointer::latest(time.path() / "checkpoints").has_value());
    }
  EXPECT_EQ(runs, 1);
  EXPECT_NE(printed.find("global_magnitude, sparsity 0.8"), std::string::npos) << printed;
}

TEST(PruneCommand, ScanPrintsATableAndPastableRecipeLines) {
  const TempDir root("cli-scan");
  const auto src = make_run(root);
  testing::internal::CaptureStdout();
  ASSERT_EQ(run_prune({src.string(), "prune.method=l2_structured", "prune.scan_samples=60", "prune.max_drop=100",
                   "prune.scan_sparsities=[0.25,0.5]", "--scan"}),
            0);
  const std::string printed = testing::internal::GetCapturedStdout();
  EXPECT_NE(printed.find("sensitivity (l2_structured)"), std::string::npos) << printed;
  EXPECT_NE(printed.find("| layer | 25 % | 50 % | suggested |"), std::string::npos) << printed;
  EXPECT_NE(printed.find("| stage1.conv1 |"), std::string::npos);
  EXPECT_EQ(printed.find("| head |"), std::string::npos);  // skipped
  // max_drop 100 points: every layer takes the largest scanned sparsity; the lines compose.
  const auto recipe = printed.substr(printed.find("# suggested"));
  YAML::Node node = YAML::Load(recipe);
  auto rc = cli::read_run_config(node);
  EXPECT_EQ(rc.prune.method, "l2_structured");
  auto plan = rc.prune.layer_sparsities();
  EXPECT_EQ(plan.size(), 5u);
  EXPECT_DOUBLE_EQ(plan.at("stage0.conv0"), 0.5);
  EXPECT_FALSE(fs::exists(root / "outputs"));  // a scan writes nothing

  // 2:4: one column; the layer it cannot prune is marked, and ends up in skip.
  testing::internal::CaptureStdout();
  ASSERT_EQ(run_prune({src.string(), "prune.method=2:4", "prune.scan_samples=60", "prune.max_drop=100", "--scan"}), 0);
  const std::string semi = testing::internal::GetCapturedStdout();
  EXPECT_NE(semi.find("| stage0.conv0 | - | n/a: has 1 input channels, not a multiple of 4 |"), std::string::npos) << semi;
  EXPECT_NE(semi.find("skip: [head, stage0.conv0]"), std::string::npos) << semi;
}

TEST(PruneCommand, BadInputIsNamedAndNothingIsWritten) {
  const TempDir root("cli-bad");
  const auto src = make_run(root);
  const auto out = root / "never";
  const std::string dir = "run.dir=" + out.string();
  expect_error<ConfigError>([&] { run_prune({src.string(), "prune.method=2:4", dir}); },
                            {"layer 'stage0.conv0' has 1 input channels, not a multiple of 4", "prune.skip"});
  expect_error<ConfigError>([&] { run_prune({src.string(), "+prune.layers.stage0.cnv0=0.2", dir}); },
                            {"unknown layer 'stage0.cnv0'", "did you mean 'stage0.conv0'"});
  expect_error<ConfigError>([&] { run_prune({src.string(), "prune.sparsity=1.0", dir}); }, {"prune.sparsity"});
  expect_error<ConfigError>([&] { run_prune({src.string(), "prune.method=random", dir}); }, {"prune.method"});
  expect_error<ConfigError>([&] { run_prune({src.string(), "prune.method=magnitude", "prune.compact=true", dir}); },
                            {"prune.compact"});
  expect_error<UsageError>([&] { run_prune({}); }, {"prune: missing checkpoint"});
  expect_error<UsageError>([&] { run_prune({src.string(), "--fast"}); }, {"unknown option '--fast'"});
  expect_error<CheckpointError>([&] { run_prune({(root / "nothing").string(), dir}); }, {"nothing"});
  EXPECT_FALSE(fs::exists(out));
}

TEST(PruneCommand, FineTuneRecipeNamesThePrunedRunAndTheDenseTeacher) {
  const TempDir root("cli-recipe");
  const auto src = make_run(root);
  const auto pruned = root / "pruned";
  testing::internal::CaptureStdout();
  ASSERT_EQ(run_prune({src.string(), "prune.method=l1_structured", "prune.sparsity=0.4", "prune.compact=true",
                       "run.dir=" + pruned.string()}),
            0);
  testing::internal::GetCapturedStdout();
  const fs::path source_dir = std::getenv("RETORT_SOURCE_DIR") ? std::getenv("RETORT_SOURCE_DIR") : RETORT_SOURCE_DIR;
  auto composed = config::compose({source_dir / "recipes" / "fmnist" / "prune_finetune.yaml",
                                   {"prune.from=" + pruned.string(), "distill.teacher.checkpoint=" + src.string()},
                                   {},
                                   cli::run_config_schema_yaml()});
  YAML::Node config = composed.config;
  auto start = cli::resolve_prune_from(config);
  ASSERT_TRUE(start.has_value());
  auto rc = cli::read_run_config(config);
  EXPECT_EQ(rc.prune.from, pruned.string());
  EXPECT_EQ(rc.distill.teacher_checkpoint, src.string());
  EXPECT_EQ(rc.model.conv_channels, (std::vector<int64_t>{3, 3, 5, 5}));  // the pruned run's model, not cnn_large
  auto model = models::make_model(rc.model);
  models::load_weights(*model, start->weights, "test");
  // Without the pruned run the recipe says how to name it.
  ::unsetenv("RETORT_PRUNED");
  expect_error<ConfigError>(
      [&] {
        config::compose({source_dir / "recipes" / "fmnist" / "prune_finetune.yaml",
                         {"distill.teacher.checkpoint=" + src.string()},
                         {},
                         cli::run_config_schema_yaml()});
      },
      {"RETORT_PRUNED", "prune.from"});
}

// A run whose stored weights still hold what its masks prune (weights drift from masks when
// they are not re-applied): the exported graph computes with the masks.
TEST(PrunedExport, OnnxComputesWithTheMasksNotTheStoredWeights) {
  const TempDir root("cli-export-masked");
  auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(make_run(root)));
  torch::manual_seed(5);
  prune::Masks masks;  // unstructured: no channel loses all of its weights
  for (const char* param : {"stage0.conv1.weight", "fc0.weight"})
    masks.set(param, torch::rand(ckpt.model.at(param).sizes()) > 0.5);
  for (const auto& [key, mask] : masks.state_dict()) ckpt.state["task." + key] = mask;
  const auto pruned = root / "pruned";
  trainer::Checkpointer(pruned / "checkpoints", 3).save(ckpt);
  const auto file = root / "model.onnx";
  ASSERT_EQ(run_export({pruned.string(), file.string()}), 0);
  const auto check = test::onnx_check(file);
  ASSERT_TRUE(check.passed) << check.output;
  EXPECT_FALSE(check.declared["metadata"].contains("retort.model"));  // nothing to compact

  if (auto why = test::onnx_runtime_missing(); !why.empty()) GTEST_SKIP() << why;
  auto stored = load_model(pruned), masked = load_model(pruned);
  masks.apply(*masked);
  torch::NoGradGuard g;
  const auto x = torch::randn({4, 1, 28, 28});
  const auto got = test::onnx_runtime_logits(file, x);
  ASSERT_TRUE(got.defined());
  EXPECT_LT((got - masked->forward(x).logits).abs().max().item<double>(), 1e-4);
  EXPECT_GT((got - stored->forward(x).logits).abs().max().item<double>(), 1e-3);
}

TEST(PrunedExport, OnnxOfAStructuredPruneIsCompacted) {
  const TempDir root("cli-export-compact");
  const auto pruned = root / "pruned";
  testing::internal::CaptureStdout();
  ASSERT_EQ(run_prune({make_run(root).string(), "prune.method=l1_structured", "prune.sparsity=0.4",
                       "run.dir=" + pruned.string()}),
            0);
  testing::internal::GetCapturedStdout();
  const auto file = root / "model.onnx";
  ASSERT_EQ(run_export({pruned.string(), file.string()}), 0);
  const auto check = test::onnx_check(file);
  ASSERT_TRUE(check.passed) << check.output;
  const auto compacted = check.declared["metadata"].value("retort.model", "");
  EXPECT_NE(compacted.find("conv_channels: [3, 3, 5, 5]"), std::string::npos) << compacted;

  if (auto why = test::onnx_runtime_missing(); !why.empty()) GTEST_SKIP() << why;
  auto masked = load_model(pruned);  // the pruned run's weights are the masked ones
  torch::NoGradGuard g;
  const auto x = torch::randn({3, 1, 28, 28});
  const auto got = test::onnx_runtime_logits(file, x);
  ASSERT_TRUE(got.defined());
  EXPECT_LT((got - masked->forward(x).logits).abs().max().item<double>(), 1e-4);
}
