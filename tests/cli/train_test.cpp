// The recipes compose into valid distillations; `retort report` compares runs side by side.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/fs.h"
#include "launch/world.h"
#include "models/models.h"
#include "tests/distill/helpers.h"
#include "trainer/distill_task.h"
#include "trainer/trainer.h"
#include "tests/common/temp_dir.h"

using retort::test::TempDir;

namespace fs = std::filesystem;
using namespace retort;
using test::expect_error;

namespace {

cli::RunConfig recipe(const std::string& name, std::vector<std::string> overrides = {}) {
  config::ComposeRequest request;
  request.recipe = test::source_dir() / "recipes" / "fmnist" / name;
  request.overrides = std::move(overrides);
  auto composed = config::compose(request);
  return cli::read_run_config(composed.config);
}

/// The dry run of the recipe's distillation on freshly built models.
distill::Distiller dry_run(const cli::RunConfig& teacher, const cli::RunConfig& student) {
  teacher.data.validate();
  student.distill.validate();
  student.distill.validate_teacher_source();
  auto t = models::make_model(teacher.model);
  distill::freeze(*t);
  distill::Distiller d(t, models::make_model(student.model), student.distill);
  d->prepare(torch::randn({2, 1, 28, 28}));
  return d;
}

}  // namespace

TEST(Recipes, CnnDistillationComposesAndPassesTheDryRun) {
  auto t = recipe("teacher.yaml");
  auto s = recipe("distill.yaml", {"distill.teacher.checkpoint=/runs/teacher"});
  auto base = recipe("student.yaml");
  EXPECT_EQ(s.distill.teacher_checkpoint, "/runs/teacher");
  EXPECT_EQ(config::emit(s.tree["model"]), config::emit(base.tree["model"]));  // same student as the baseline
  EXPECT_EQ(config::emit(s.tree["data"]), config::emit(base.tree["data"]));    // on the same data
  EXPECT_EQ(config::emit(s.tree["optim"]), config::emit(base.tree["optim"]));  // with the same optimizer
  EXPECT_EQ(config::emit(s.tree["trainer"]), config::emit(base.tree["trainer"]));  // for the same steps
  auto d = dry_run(t, s);
  EXPECT_NEAR(d->weights().ce, 0.7, 1e-12);
  EXPECT_NEAR(d->weights().mse, 0.3, 1e-12);
  ASSERT_EQ(d->hidden_pairs().size(), 1u);
  EXPECT_EQ(d->hidden_pairs()[0].projection, "linear");  // fc0: 64 -> 512
  EXPECT_LT(models::count_parameters(d->student()) * 10, models::count_parameters(d->teacher()));
  // The teacher comes from RETORT_TEACHER or an override; without either the check names both keys.
  ::setenv("RETORT_TEACHER", "/runs/from-env", 1);
  EXPECT_EQ(recipe("distill.yaml").distill.teacher_checkpoint, "/runs/from-env");
  ::unsetenv("RETORT_TEACHER");
  auto none = recipe("distill.yaml");
  EXPECT_EQ(none.distill.teacher_checkpoint, "");
  expect_error<ConfigError>([&] { none.distill.validate_teacher_source(); },
                            {"no teacher given", "distill.teacher.checkpoint=", "distill.teacher.weights="});
}

TEST(Recipes, TransformerDistillationComposesAndPassesTheDryRun) {
  auto t = recipe("transformer_teacher.yaml");
  auto s = recipe("transformer_distill.yaml", {"distill.teacher.checkpoint=/runs/vit"});
  auto base = recipe("transformer_student.yaml");
  EXPECT_EQ(t.model.name, "vit");
  EXPECT_EQ(config::emit(s.tree["model"]), config::emit(base.tree["model"]));
  auto d = dry_run(t, s);
  const auto& pairs = d->hidden_pairs();
  ASSERT_EQ(pairs.size(), 2u);  // uniform: layer0 -> layer1, layer1 -> layer3
  EXPECT_EQ(pairs[0].layers.teacher, 1);
  EXPECT_EQ(pairs[1].layers.teacher, 3);
  EXPECT_EQ(pairs[1].projection, "linear");
  EXPECT_EQ(d->attention_pairs().size(), 2u);
  const auto tp = models::count_parameters(d->teacher()), sp = models::count_parameters(d->student());
  EXPECT_GT(tp, 7 * sp);
  auto l = d->forward(torch::randn({3, 1, 28, 28}), torch::randint(0, 10, {3}));
  std::vector<std::string> names;
  for (const auto& kv : l.terms) names.push_back(kv.first);
  EXPECT_EQ(names, (std::vector<std::string>{"ce", "kl", "mse.layer0", "mse.layer1", "attn.0", "attn.1"}));
}

TEST(Report, TeacherBaselineAndDistilledSideBySide) {
  const TempDir root("report");
  const std::string data = "data:\n  subset: 64\n  eval_batch_size: 32\n  batch_size: 32\n";
  auto train = std::make_shared<data::Dataset>();
  torch::manual_seed(0);
  train->labels = torch::randint(0, 10, {64});
  train->images = torch::randint(0, 255, {64, 1, 28, 28}).to(torch::kUInt8);
  auto run = [&](const std::string& name, const std::string& model_yaml, const std::string& extra,
                 std::shared_ptr<trainer::Task> task) {
    trainer::TrainerSetup s;
    s.trainer.max_steps = 2;
    s.trainer.progress = "off";
    s.trainer.eval = false;
    s.data.batch_size = 32;
    s.run_dir = root / name;
    fs::create_directories(s.run_dir);  // the CLI creates it before training
    s.config_yaml = model_yaml + data + extra;
    s.train_set = train;
    s.task = std::move(task);
    trainer::Trainer(std::move(s)).fit();
  };
  const std::string tm = "model:\n  name: cnn\n  channels: [8, 16]\n  convs_per_stage: 1\n  hidden: [32]\n";
  const std::string sm = "model:\n  name: cnn\n  channels: [4, 8]\n  convs_per_stage: 1\n  hidden: [8]\n";
  auto t_opts = cli::read_run_config(YAML::Load(tm)).model;
  auto s_opts = cli::read_run_config(YAML::Load(sm)).model;
  auto teacher = models::make_model(t_opts);
  run("teacher", tm, "", std::make_shared<trainer::SupervisedTask>(teacher));
  run("baseline", sm, "", std::make_shared<trainer::SupervisedTask>(models::make_model(s_opts)));
  const std::string distill = "distill:\n  teacher:\n    checkpoint: " + (root / "teacher").string() + "\n";
  distill::Distiller d(teacher, models::make_model(s_opts), distill::DistillOptions());
  run("distilled", sm, distill, std::make_shared<trainer::DistillTask>(d, trainer::sample_batch(*train)));

  launch::World world(launch::LaunchInfo{});
  auto report = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "report");
    return cli::run_command_line(world, args);
  };
  const auto out = root / "out";
  ASSERT_EQ(report({(root / "teacher").string(), (root / "baseline").string(), (root / "distilled").string(), "--out",
                    out.string(), "--warmup", "1", "--repeats", "3", "--threads", "1", "--batch", "32",
                    "data.subset=50", "--json", (out / "table.json").string()}),
            0);
  std::ifstream in(out / "report.json");
  auto j = nlohmann::json::parse(in);
  ASSERT_EQ(j["runs"].size(), 3u);
  EXPECT_EQ(j["runs"][0]["role"], "teacher");
  EXPECT_EQ(j["runs"][1]["role"], "baseline");
  EXPECT_EQ(j["runs"][2]["role"], "distilled");
  EXPECT_EQ(j["runs"][0]["parameters"], models::count_parameters(*teacher));
  EXPECT_EQ(j["runs"][2]["parameters"], models::count_parameters(*models::make_model(s_opts)));
  for (const auto& r : j["runs"]) {
    EXPECT_EQ(r["test_samples"], 50);
    EXPECT_EQ(r["batch"], 32);
    EXPECT_EQ(r["threads"], 1);  // every run timed alike, whatever its recipe's trainer.threads
    EXPECT_GT(r["latency_ms_per_batch"].get<double>(), 0);
    EXPECT_NEAR(r["latency_ms_per_sample"].get<double>() * 32, r["latency_ms_per_batch"].get<double>(), 1e-9);
    EXPECT_GE(r["test_accuracy"].get<double>(), 0);
    EXPECT_LE(r["test_accuracy"].get<double>(), 1);
    EXPECT_GT(r["weights_mb"].get<double>(), 0);
  }
  std::ifstream md(out / "report.md");
  std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("| run | role | model | parameters"), std::string::npos);
  EXPECT_NE(text.find("size vs teacher"), std::string::npos);
  EXPECT_NE(text.find("cnn [4, 8] x1 fc [8]"), std::string::npos);
  // Speed vs teacher: the latencies per sample, in the row of the distilled student.
  std::ostringstream ratio;
  ratio << std::fixed << std::setprecision(2)
        << j["runs"][0]["latency_ms_per_sample"].get<double>() / j["runs"][2]["latency_ms_per_sample"].get<double>()
        << "x |";
  const auto distilled_row = text.substr(text.find((root / "distilled").string()));
  EXPECT_NE(distilled_row.substr(0, distilled_row.find('\n')).find(ratio.str()), std::string::npos) << text;

  // The table as JSON: the ratios to the teacher too, as numbers.
  std::ifstream table_in(out / "table.json");
  const auto table = nlohmann::json::parse(table_in);
  ASSERT_EQ(table.size(), 3u);
  EXPECT_DOUBLE_EQ(table[0]["size_vs_teacher"].get<double>(), 1.0);
  EXPECT_NEAR(table[2]["size_vs_teacher"].get<double>(),
              static_cast<double>(models::count_parameters(*models::make_model(s_opts))) /
                  static_cast<double>(models::count_parameters(*teacher)),
              1e-12);
  EXPECT_NEAR(table[2]["speed_vs_teacher"].get<double>(),
              j["runs"][0]["latency_ms_per_sample"].get<double>() / j["runs"][2]["latency_ms_per_sample"].get<double>(),
              1e-12);

  expect_error<UsageError>([&] { report({}); }, {"report: missing run"});
  expect_error<UsageError>([&] { report({"x", "--repeats", "0"}); },
                           {"report: --repeats: expects an integer >= 1, got '0'"});
  expect_error<UsageError>([&] { report({"x", "--fast"}); }, {"report: unknown option '--fast'", "--threads"});
  expect_error<UsageError>([&] { report({"x", "--batch", "0"}); }, {"--batch: expects an integer >= 1"});
  expect_error<UsageError>([&] { report({"x", "--csv", out.string()}); }, {"--csv", out.string(), "is a directory"});
  expect_error<CheckpointError>([&] { report({(root / "nothing").string(), "--out", out.string()}); }, {"nothing"});
}
