// The `retort` program as a user runs it: exit codes, messages, run directory contents.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "tests/common/temp_dir.h"
#include "tests/e2e/helpers.h"

using retort::test::has_dataset;
using retort::test::kRecipe;
using retort::test::kSmall;
using retort::test::run_retort;
using retort::test::TempDir;

namespace fs = std::filesystem;

namespace {

/// The fields of one CSV line (RFC 4180: a quoted field may hold commas and doubled quotes).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      fields.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

}  // namespace

TEST(Cli, VersionAndHelp) {
  auto v = run_retort("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_NE(v.out.find("retort "), std::string::npos);
  auto h = run_retort("--help");
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("exit codes"), std::string::npos);
  auto bad = run_retort("frobnicate");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("unknown command 'frobnicate'"), std::string::npos) << bad.out;
}

// The program's malloc is jemalloc with core/malloc_conf.cpp's settings (jemalloc prints
// its options at exit with stats_print), and MALLOC_CONF overrides them.
TEST(Cli, RunsOnJemallocWithRetortsSettingsWhichTheEnvironmentOverrides) {
  const auto ours = run_retort("--version", "MALLOC_CONF=stats_print:true");
  ASSERT_EQ(ours.code, 0) << ours.out;
  for (const char* option : {"opt.dirty_decay_ms: -1", "opt.muzzy_decay_ms: -1", "opt.background_thread: true"})
    EXPECT_NE(ours.out.find(option), std::string::npos) << option << " not in\n" << ours.out.substr(0, 2000);
  const auto theirs = run_retort("--version", "MALLOC_CONF=stats_print:true,dirty_decay_ms:5000");
  EXPECT_NE(theirs.out.find("opt.dirty_decay_ms: 5000"), std::string::npos) << theirs.out.substr(0, 2000);
  EXPECT_NE(theirs.out.find("opt.muzzy_decay_ms: -1"), std::string::npos);
}

TEST(Cli, EveryCommandHasItsUsageAndUsageErrorsNameTheCommandAndTheFlag) {
  // Usage errors: exit 2, before any file is read, one line naming the command and what is wrong.
  std::vector<std::pair<std::string, std::string>> usage_errors = {
      {"--frobnicate", "unknown option '--frobnicate'"},
      {"report /nonexistent/run --threads many", "report: --threads: expects an integer >= 0, got 'many'"},
      {"export /nonexistent/run", "export: out is required"},
      {"prune /nonexistent/a /nonexistent/b prune.sparsity=0.5", "prune: unexpected argument '/nonexistent/b'"}};
  // Each command with one thing its --help must list.
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"train", "--multirun"}, {"eval", "ensemble"}, {"export", "out.safetensors"}, {"report", "--csv FILE"},
      {"prune", "--scan"}};
  for (const auto& [command, listed] : commands) {
    auto help = run_retort(command + " --help");
    EXPECT_EQ(help.code, 0) << help.out;
    EXPECT_NE(help.out.find("usage: retort " + command + " "), std::string::npos) << help.out;
    EXPECT_NE(help.out.find(listed), std::string::npos) << help.out;
    if (command == "report") {
      EXPECT_EQ(run_retort("help " + command).out, help.out);  // `help <command>` is `<command> --help`
    }
    usage_errors.push_back({command + " /nonexistent/a /nonexistent/b --frobnicate=3",
                            command + ": unknown option '--frobnicate=3'"});
  }
  for (const auto& [args, message] : usage_errors) {
    auto r = run_retort(args);
    EXPECT_EQ(r.code, 2) << args << ": " << r.out;
    EXPECT_NE(r.out.find(message), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one line: " << r.out;
  }
  for (const auto& [command, listed] : {std::pair<std::string, std::string>{"tokenize", "--tokenizer"},
                                        {"generate", "--top-k"}, {"cache-teacher", "distill.cache.dir"}}) {
    auto help = run_retort(command + " --help");
    EXPECT_EQ(help.code, 0) << help.out;
    EXPECT_NE(help.out.find(listed), std::string::npos) << help.out;
  }
  auto none = run_retort("");
  EXPECT_EQ(none.code, 2) << none.out;
  EXPECT_NE(none.out.find("usage: retort <command>"), std::string::npos) << none.out;
}

TEST(Cli, TrainEvalExportRoundTrip) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir dir("run", false);
  auto r = run_retort("train " + kRecipe + kSmall + "run.dir=" + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* f : {"config/config.yaml", "config/recipe.yaml", "config/overrides.yaml", "train.log", "metrics.jsonl"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / "step-00000006" / "manifest.json"));
  EXPECT_NE(retort::read_file(dir / "config" / "overrides.yaml").find("trainer.max_steps=6"), std::string::npos);
  EXPECT_NE(retort::read_file(dir / "train.log").find("test accuracy"), std::string::npos);

  auto e = run_retort("eval " + dir.string() + " data.subset=500");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("accuracy"), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("500 samples"), std::string::npos) << e.out;

  auto out = dir / "model.safetensors";
  auto x = run_retort("export " + dir.string() + " " + out.string());
  ASSERT_EQ(x.code, 0) << x.out;
  ASSERT_TRUE(fs::exists(out));
  // A PyTorch user loads it into the same architecture, strictly (names and shapes).
  const std::string py = std::string("cd ") + RETORT_SOURCE_DIR + "/bench/reference && /usr/bin/python3 -c \"" +
                         "import torch; from models import Cnn, load_safetensors; " +
                         "m = Cnn(channels=[16, 32], convs_per_stage=1, hidden=[64]); " +
                         "m.load_state_dict(load_safetensors('" + out.string() + "'), strict=True); " +
                         "m.eval(); print('logits', tuple(m(torch.zeros(2, 1, 28, 28))[0].shape))\"";
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0) {
    const auto loaded = retort::test::run_shell(py);
    EXPECT_EQ(loaded.code, 0) << loaded.out;
    EXPECT_NE(loaded.out.find("logits (2, 10)"), std::string::npos) << loaded.out;
  }
}

TEST(Cli, MissingDatasetNamesPathAndPackageAndCreatesNothing) {
  const TempDir dir("nodata", false);
  auto r = run_retort("train " + kRecipe + kSmall + "data.root=/nonexistent/fmnist run.dir=" + dir.string());
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("/nonexistent/fmnist"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dataset-fashion-mnist"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir));
}

TEST(Cli, TruncatedIdxIsADataError) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir data("trunc", false);
  fs::create_directories(data);
  for (auto name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                    "t10k-labels-idx1-ubyte.gz"})
    fs::copy_file(fs::path("/usr/share/datasets/fashion-mnist") / name, data / name);
  auto bytes = retort::read_file(data / "train-images-idx3-ubyte.gz");
  retort::write_file_atomic(data / "train-images-idx3-ubyte.gz", bytes.substr(0, bytes.size() / 2));
  const TempDir dir("trunc-run", false);
  auto r = run_retort("train " + kRecipe + kSmall + "data.root=" + data.string() + " run.dir=" + dir.string());
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("train-images-idx3-ubyte.gz"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir));
}

TEST(Cli, UnknownKeyIsSuggestedAndNothingIsCreated) {
  const TempDir dir("badkey", false);
  auto r = run_retort("train " + kRecipe + " trainer.max_epoch=3 run.dir=" + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("trainer.max_epochs"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir));
}

TEST(Cli, WrongTypeAndOutOfRangeAreReportedTogether) {
  const TempDir dir("badval", false);
  auto r = run_retort("train " + kRecipe + " trainer.max_epochs=abc optim.lr=-1 run.dir=" + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("trainer.max_epochs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("optim.lr"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir));
}

TEST(Cli, DdpBackendAndTrainerDeviceAreKeysAndTheirValuesAreChecked) {
  const TempDir dir("backend", false);
  auto bad = run_retort("train " + kRecipe + " ddp.backend=gloo run.dir=" + dir.string());
  EXPECT_EQ(bad.code, 2) << bad.out;
  for (const char* word : {"ddp.backend", "gloo", "nccl"}) EXPECT_NE(bad.out.find(word), std::string::npos) << bad.out;
  EXPECT_FALSE(fs::exists(dir));
  auto bad_device = run_retort("train " + kRecipe + " trainer.device=tpu run.dir=" + dir.string());
  EXPECT_EQ(bad_device.code, 2) << bad_device.out;
  for (const char* word : {"trainer.device", "tpu", "cuda"}) EXPECT_NE(bad_device.out.find(word), std::string::npos) << bad_device.out;
  EXPECT_FALSE(fs::exists(dir));
  auto bad_mixup = run_retort("train " + kRecipe + " data.mixup=-1 run.dir=" + dir.string());
  EXPECT_EQ(bad_mixup.code, 2) << bad_mixup.out;
  EXPECT_NE(bad_mixup.out.find("data.mixup"), std::string::npos) << bad_mixup.out;
  EXPECT_FALSE(fs::exists(dir));
  auto bad_smoothing = run_retort("train " + kRecipe + " trainer.label_smoothing=1 run.dir=" + dir.string());
  EXPECT_EQ(bad_smoothing.code, 2) << bad_smoothing.out;
  EXPECT_NE(bad_smoothing.out.find("trainer.label_smoothing"), std::string::npos) << bad_smoothing.out;
  EXPECT_FALSE(fs::exists(dir));
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  // DKD needs each sample's one true class, which mixup mixes away: refused before any teacher is read.
  auto dkd_mixup = run_retort(std::string("train recipes/fmnist/distill.yaml") +
                              " distill.teacher.checkpoint=/nonexistent data.mixup=1 distill.weights.dkd=1 run.dir=" +
                              dir.string());
  EXPECT_EQ(dkd_mixup.code, 2) << dkd_mixup.out;
  for (const char* word : {"distill.weights.dkd", "data.mixup"})
    EXPECT_NE(dkd_mixup.out.find(word), std::string::npos) << dkd_mixup.out;
  EXPECT_FALSE(fs::exists(dir));
  auto ok = run_retort("train " + kRecipe + kSmall + "trainer.eval=false ddp.backend=local run.dir=" + dir.string());
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("backend local"), std::string::npos) << ok.out;
}

TEST(Cli, MalformedOverride) {
  auto r = run_retort("train " + kRecipe + " trainer..max_epochs=3");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("trainer..max_epochs=3"), std::string::npos) << r.out;
}

TEST(Cli, UnwritableRunDirectory) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir file("notadir", false);
  retort::write_file_atomic(file, "x");
  auto r = run_retort("train " + kRecipe + kSmall + "run.dir=" + (file / "run").string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("run.dir"), std::string::npos) << r.out;
  fs::remove(file);
}

TEST(Cli, EvalOfSeveralRunsReportsEachAndTheirEnsemble) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir a("ens-a", false), b("ens-b", false);
  const std::string train = "train " + kRecipe + kSmall + "trainer.eval=false ";
  ASSERT_EQ(run_retort(train + "trainer.seed=1 run.dir=" + a.string()).code, 0);
  ASSERT_EQ(run_retort(train + "trainer.seed=2 run.dir=" + b.string()).code, 0);
  // The test-loss-and-accuracy line printed after `header`.
  auto result_after = [](const std::string& out, const std::string& header) {
    const auto at = out.find(header);
    if (at == std::string::npos) return std::string("(no '" + header + "')");
    const auto line = out.find("test loss", at);
    return out.substr(line, out.find('\n', line) - line);
  };
  auto two = run_retort("eval " + a.string() + " " + b.string() + " data.subset=500");
  EXPECT_EQ(two.code, 0) << two.out;
  EXPECT_NE(two.out.find("checkpoint " + a.string()), std::string::npos) << two.out;
  EXPECT_NE(two.out.find("checkpoint " + b.string()), std::string::npos) << two.out;
  EXPECT_NE(result_after(two.out, "ensemble of 2 (mean logits)").find("(500 samples)"), std::string::npos) << two.out;
  // A run with itself: the mean of equal logits is the run's own result.
  auto self = run_retort("eval " + a.string() + " " + a.string() + " data.subset=500");
  EXPECT_EQ(self.code, 0) << self.out;
  EXPECT_EQ(result_after(self.out, "ensemble of 2"), result_after(self.out, "checkpoint " + a.string())) << self.out;
  auto missing = run_retort("eval " + a.string() + " /nonexistent/run");
  EXPECT_EQ(missing.code, 4) << missing.out;
  EXPECT_NE(missing.out.find("/nonexistent/run"), std::string::npos) << missing.out;
}

TEST(Cli, CorruptCheckpointIsRefused) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir dir("corrupt", false);
  ASSERT_EQ(run_retort("train " + kRecipe + kSmall + "trainer.eval=false run.dir=" + dir.string()).code, 0);
  auto model = dir / "checkpoints" / "step-00000006" / "model.safetensors";
  auto bytes = retort::read_file(model);
  retort::write_file_atomic(model, bytes.substr(0, bytes.size() - 100));
  auto e = run_retort("eval " + dir.string());
  EXPECT_EQ(e.code, 4) << e.out;
  EXPECT_NE(e.out.find("model.safetensors"), std::string::npos) << e.out;
  auto x = run_retort("export " + dir.string() + " " + (dir / "out.safetensors").string());
  EXPECT_EQ(x.code, 4) << x.out;
  EXPECT_FALSE(fs::exists(dir / "out.safetensors"));
  auto none = run_retort("eval /nonexistent/run");
  EXPECT_EQ(none.code, 4) << none.out;
}

TEST(Cli, AFreshRunIntoAnOldRunIsRefusedAndResumeAutoContinuesIt) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir dir("resume", false);
  ASSERT_EQ(run_retort("train " + kRecipe + kSmall + "trainer.eval=false run.dir=" + dir.string()).code, 0);
  // A fresh run into it is refused before anything is written: resume, or another dir.
  const auto metrics = retort::read_file(dir / "metrics.jsonl");
  const auto log = retort::read_file(dir / "train.log");
  auto again = run_retort("train " + kRecipe + kSmall + "trainer.eval=false run.dir=" + dir.string());
  EXPECT_EQ(again.code, 2) << again.out;
  EXPECT_NE(again.out.find("already holds a run (metrics.jsonl, checkpoints/)"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("trainer.resume=auto"), std::string::npos) << again.out;
  EXPECT_EQ(retort::read_file(dir / "metrics.jsonl"), metrics);
  EXPECT_EQ(retort::read_file(dir / "train.log"), log);
  auto r = run_retort("train " + kRecipe +
                      " data.subset=600 data.batch_size=64 trainer.max_steps=12 trainer.threads=1 trainer.eval=false "
                      "trainer.resume=auto run.dir=" + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resumed from"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / "step-00000012"));
}

TEST(Cli, CfgPrintsTheResolvedConfigAndHelpListsGroupsAndKeys) {
  auto c = run_retort("train " + kRecipe + " --cfg optim.lr=0.5 trainer.max_steps=7");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_NE(c.out.find("lr: 0.5"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("max_steps: 7"), std::string::npos) << c.out;
  EXPECT_EQ(c.out.find("${now"), std::string::npos) << "interpolations are resolved";
  auto h = run_retort("train " + kRecipe + " --help");
  ASSERT_EQ(h.code, 0) << h.out;
  EXPECT_NE(h.out.find("model: cnn_large cnn_small"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("trainer.max_epochs"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("epochs to train"), std::string::npos) << h.out;
  // Flags anywhere; overrides reach the config as given and in order: the last setting wins.
  auto order = run_retort("train --cfg ++optim.lr=0.5 " + kRecipe + " optim.lr=0.25");
  ASSERT_EQ(order.code, 0) << order.out;
  EXPECT_NE(order.out.find("lr: 0.25"), std::string::npos) << order.out;
}

TEST(Cli, ReportWritesItsTableAsCsvAndJson) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir dir("report", false);
  const auto trained = dir / "run";
  ASSERT_EQ(run_retort("train " + kRecipe + kSmall + "trainer.eval=false run.dir=" + trained.string()).code, 0);
  const auto csv = dir / "plots" / "table.csv", json = dir / "plots" / "table.json";
  auto r = run_retort("report " + trained.string() + " data.subset=100 --out " + (dir / "out").string() + " --csv " +
                      csv.string() + " --json " + json.string() + " --warmup 0 --repeats 1 --threads 1 --batch 16");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(csv.string()), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir / "out" / "report.md"));

  // JSON: one object per run holding every column of the printed table, numbers as numbers.
  const auto rows = nlohmann::json::parse(retort::read_file(json));
  ASSERT_EQ(rows.size(), 1u);
  const auto& row = rows[0];
  const std::vector<std::string> names = {"run", "step", "role", "model", "parameters", "weights_mb", "test_accuracy",
                                          "latency_ms_per_batch", "batch", "latency_ms_per_sample", "peak_forward_mb",
                                          "threads", "amp"};
  EXPECT_EQ(row.size(), names.size()) << row.dump();
  EXPECT_EQ(row["run"], trained.string());
  EXPECT_EQ(row["step"], 6);
  EXPECT_EQ(row["batch"], 16);
  EXPECT_EQ(row["threads"], 1);
  EXPECT_EQ(row["amp"], "off");
  EXPECT_TRUE(row["parameters"].is_number_integer()) << row.dump();
  for (const char* n : {"weights_mb", "test_accuracy", "latency_ms_per_batch", "latency_ms_per_sample"})
    EXPECT_TRUE(row[n].is_number()) << n << " in " << row.dump();
  EXPECT_TRUE(row["peak_forward_mb"].is_number() || row["peak_forward_mb"].is_null()) << row.dump();
  // The printed table shows the same values, rounded.
  std::ostringstream accuracy;
  accuracy << std::fixed << std::setprecision(2) << 100 * row["test_accuracy"].get<double>() << " %";
  EXPECT_NE(r.out.find("| " + accuracy.str() + " |"), std::string::npos) << r.out;

  // CSV: a header of the same names in the printed order, then the same values.
  const std::string text = retort::read_file(csv);
  const auto eol = text.find('\n');
  ASSERT_NE(eol, std::string::npos) << text;
  EXPECT_EQ(csv_fields(text.substr(0, eol)), names) << text;
  EXPECT_EQ(text.find('\n', eol + 1), text.size() - 1) << "one line per run: " << text;
  const auto values = csv_fields(text.substr(eol + 1, text.size() - eol - 2));
  ASSERT_EQ(values.size(), names.size()) << text;  // the model's commas stay inside its quoted field
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& v = row[names[i]];
    if (v.is_string()) EXPECT_EQ(values[i], v.get<std::string>()) << names[i];
    else if (v.is_null()) EXPECT_EQ(values[i], "") << names[i];
    else EXPECT_EQ(std::stod(values[i]), v.get<double>()) << names[i];
  }
  EXPECT_NE(row["model"].get<std::string>().find(','), std::string::npos) << row.dump();
}

TEST(Cli, SweepRunsTheProductAndAFailedRunDoesNotStopIt) {
  if (!has_dataset()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const TempDir dir("sweep", false);
  fs::create_directories(dir);
  const std::string cmd = std::string("cd ") + dir.string() + " && " + RETORT_BIN + " train -m " + RETORT_SOURCE_DIR +
                          "/" + kRecipe + kSmall + "trainer.eval=false optim.lr=1e-3,3e-4 model.hidden=[32],[-1]";
  const auto [code, out] = retort::test::run_shell(cmd);
  EXPECT_EQ(code, 1) << out;  // one run per lr has an invalid width
  EXPECT_NE(out.find("| 0 | "), std::string::npos) << out;
  EXPECT_NE(out.find("| 3 | "), std::string::npos) << out;
  EXPECT_NE(out.find("failed: model.hidden"), std::string::npos) << out;
  int ok = 0;
  for (size_t at = out.find("| ok |"); at != std::string::npos; at = out.find("| ok |", at + 1)) ++ok;
  EXPECT_EQ(ok, 2) << out;
}

// A language model end to end on this repository's README as its corpus: tokenize, train
// with evaluation, eval, generate (the same seed, the same text), and the bad inputs.
TEST(Cli, LanguageModelTokenizeTrainEvalGenerate) {
  const TempDir dir("lm", false);
  const std::string tokens = (dir / "tokens").string(), run_dir = (dir / "run").string();
  auto t = run_retort("tokenize README.md " + tokens);
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("validation tokens"), std::string::npos) << t.out;
  const std::string gpt = " model=gpt_student model.context=32 model.dim=32 model.depth=2 model.heads=2 data.root=" +
                          tokens + " data.subset=64 data.batch_size=16 trainer.max_steps=8 trainer.threads=1 "
                                   "data.eval_tokens=1024 amp.mode=off trainer.log_every=2 ";
  auto r = run_retort("train recipes/text/lm_teacher.yaml" + gpt + "run.dir=" + run_dir);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("bits per byte"), std::string::npos) << r.out;
  const std::string metrics = retort::read_file(dir / "run" / "metrics.jsonl");
  EXPECT_NE(metrics.find("\"tokens_per_s\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"ppl\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"bpb\""), std::string::npos) << metrics;

  auto e = run_retort("eval " + run_dir);
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("perplexity"), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("(1024 tokens)"), std::string::npos) << e.out;  // data.eval_tokens: 32 windows of 32

  // report: the same evaluation as eval, in the language-model columns; an image classifier
  // beside a language model is refused.
  const std::string table = (dir / "table.json").string();
  auto rep = run_retort("report " + run_dir + " --repeats 2 --warmup 0 --batch 4 --out " + (dir / "report").string() +
                        " --json " + table);
  ASSERT_EQ(rep.code, 0) << rep.out;
  EXPECT_NE(rep.out.find("bits per byte"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("gpt d32 L2 h2 ctx32 vocab256"), std::string::npos) << rep.out;
  const auto row = nlohmann::json::parse(retort::read_file(table)).at(0);
  const double printed_bpb = std::stod(e.out.substr(e.out.find("bits per byte ") + 14));  // 4 decimals
  EXPECT_NEAR(row.at("bits_per_byte").get<double>(), printed_bpb, 1e-4) << e.out;
  EXPECT_NEAR(std::log(row.at("perplexity").get<double>()), row.at("eval_loss").get<double>(), 1e-9);
  EXPECT_EQ(row.at("batch").get<int64_t>(), 4);
  if (has_dataset()) {
    const std::string images = (dir / "images").string();
    ASSERT_EQ(run_retort("train " + kRecipe + kSmall + "trainer.eval=false run.dir=" + images).code, 0);
    auto mixed =
        run_retort("report " + run_dir + " " + images + " --repeats 1 --warmup 0 --out " + (dir / "mixed").string());
    EXPECT_EQ(mixed.code, 2) << mixed.out;
    EXPECT_NE(mixed.out.find("one kind"), std::string::npos) << mixed.out;
  }

  const std::string generate = "generate " + run_dir + " --prompt 'retort trains' --tokens 12 --top-k 5 --seed ";
  auto g1 = run_retort(generate + "3"), g2 = run_retort(generate + "3"), g3 = run_retort(generate + "4");
  ASSERT_EQ(g1.code, 0) << g1.out;
  EXPECT_EQ(g1.out.rfind("retort trains", 0), 0u) << g1.out;
  EXPECT_GT(g1.out.size(), std::string("retort trains\n").size()) << g1.out;
  EXPECT_EQ(g1.out, g2.out);
  EXPECT_NE(g1.out, g3.out);

  auto too_long = run_retort("generate " + run_dir + " --prompt x --tokens 40");
  EXPECT_EQ(too_long.code, 2) << too_long.out;
  EXPECT_NE(too_long.out.find("model.context"), std::string::npos) << too_long.out;
}

// Distilling a language model from the live teacher and from a teacher cache, and what
// either refuses before it writes anything.
TEST(Cli, LanguageModelDistillationLiveAndFromACache) {
  const TempDir dir("lm-distill", false);
  const std::string tokens = (dir / "tokens").string(), teacher = (dir / "teacher").string();
  ASSERT_EQ(run_retort("tokenize README.md " + tokens).code, 0);
  const std::string data = " data.root=" + tokens + " data.subset=64 data.batch_size=16 trainer.threads=1 "
                           "data.eval_tokens=512 amp.mode=off data.windows=blocks model.context=32 ";
  auto t = run_retort("train recipes/text/lm_teacher.yaml" + data + "model.dim=32 model.depth=2 model.heads=2 " +
                      "trainer.max_steps=6 run.dir=" + teacher);
  ASSERT_EQ(t.code, 0) << t.out;
  const std::string distill = "recipes/text/lm_distill.yaml" + data +
                              "model.dim=16 model.depth=1 model.heads=2 trainer.max_steps=4 "
                              "distill.weights.ce=0.5 distill.weights.reverse_kl=0.25 distill.teacher.checkpoint=" + teacher + " ";
  auto live = run_retort("train " + distill + "run.dir=" + (dir / "live").string());
  ASSERT_EQ(live.code, 0) << live.out;
  const std::string live_metrics = retort::read_file(dir / "live" / "metrics.jsonl");
  for (const char* term : {"\"loss_kl\"", "\"loss_reverse_kl\"", "\"loss_ce\""})
    EXPECT_NE(live_metrics.find(term), std::string::npos) << term << " in " << live_metrics;

  const std::string cache = " distill.cache.dir=" + (dir / "cache").string() + " distill.cache.top_k=8 distill.cache.dtype=bf16 ";
  auto made = run_retort("cache-teacher " + distill + cache);
  ASSERT_EQ(made.code, 0) << made.out;
  EXPECT_NE(made.out.find("wrote the teacher cache"), std::string::npos) << made.out;
  EXPECT_NE(made.out.find("top 8 of 256 ids in bf16"), std::string::npos) << made.out;
  auto cached = run_retort("train " + distill + cache + "run.dir=" + (dir / "cached").string());
  ASSERT_EQ(cached.code, 0) << cached.out;
  EXPECT_NE(retort::read_file(dir / "cached" / "metrics.jsonl").find("\"loss_reverse_kl\""), std::string::npos);

  // report: roles, the gap closed against the baselines' mean, the means over seeds, and
  // each run's sample, the one `retort generate` gives with the same options.
  const std::string alone = "recipes/text/lm_student.yaml" + data + "model.dim=16 model.depth=1 model.heads=2 trainer.max_steps=4 ";
  const std::string alone_dir = (dir / "alone").string();
  for (const char* seed : {"0", "1"})
    ASSERT_EQ(run_retort("train " + alone + "trainer.seed=" + seed + " run.dir=" + alone_dir + seed).code, 0);
  auto rep = run_retort("report " + teacher + " " + (dir / "alone0").string() + " " + (dir / "alone1").string() + " " +
                        (dir / "live").string() + " " + (dir / "cached").string() + " --repeats 1 --warmup 0 --batch 2 " +
                        "--prompt 'the ' --sample-tokens 6 --seed 3 --out " + (dir / "report").string());
  ASSERT_EQ(rep.code, 0) << rep.out;
  const auto report = nlohmann::json::parse(retort::read_file(dir / "report" / "report.json"));
  const auto& rows = report.at("runs");
  ASSERT_EQ(rows.size(), 5u);
  std::vector<std::string> roles;
  for (const auto& r : rows) roles.push_back(r.at("role").get<std::string>());
  EXPECT_EQ(roles, (std::vector<std::string>{"teacher", "baseline", "baseline", "distilled", "distilled"}));
  const auto loss = [&rows](size_t i) { return rows.at(i).at("test_loss").get<double>(); };
  const double baseline = 0.5 * (loss(1) + loss(2));
  EXPECT_NEAR(rows.at(3).at("gap_closed").get<double>(), (baseline - loss(3)) / (baseline - loss(0)), 1e-9);
  EXPECT_TRUE(rows.at(1).at("gap_closed").is_null());
  EXPECT_GT(rows.at(3).at("tokens_per_s").get<double>(), 0);
  const auto& means = report.at("seed_means");
  ASSERT_EQ(means.size(), 4u);  // teacher, the two baselines, live, cached
  EXPECT_EQ(means.at(1).at("seeds"), nlohmann::json::array({0, 1}));
  EXPECT_NEAR(means.at(1).at("test_loss").get<double>(), baseline, 1e-12);
  EXPECT_NE(rep.out.find("### Means over seeds"), std::string::npos) << rep.out;
  auto g = run_retort("generate " + (dir / "live").string() + " --prompt 'the ' --tokens 6 --temperature 0.8 --seed 3");
  ASSERT_EQ(g.code, 0) << g.out;
  EXPECT_NE(rep.out.find("live (distilled):\n\n```text\n" + g.out + "```"), std::string::npos) << rep.out << g.out;
  EXPECT_EQ(rows.at(3).at("sample").get<std::string>().rfind("the ", 0), 0u);

  // An int8 copy of a baseline is its own row and group, never a baseline, its weights as
  // stored; a prompt that fills the context is refused naming model.context.
  const std::string int8_dir = (dir / "alone0-int8").string();
  ASSERT_EQ(run_retort("quantize " + alone_dir + "0 run.dir=" + int8_dir).code, 0);
  auto q = run_retort("report " + alone_dir + "0 " + int8_dir + " --repeats 1 --warmup 0 --batch 2 --sample-tokens 0 " +
                      "--out " + (dir / "report-int8").string());
  ASSERT_EQ(q.code, 0) << q.out;
  const auto int8_report = nlohmann::json::parse(retort::read_file(dir / "report-int8" / "report.json"));
  const auto& int8_rows = int8_report.at("runs");
  EXPECT_EQ(int8_rows.at(1).at("role"), "int8");
  EXPECT_LT(int8_rows.at(1).at("weights_mb").get<double>(), 0.5 * int8_rows.at(0).at("weights_mb").get<double>());
  EXPECT_EQ(int8_report.at("seed_means").size(), 2u);
  auto long_prompt = run_retort("report " + alone_dir + "0 --repeats 1 --warmup 0 --prompt '" + std::string(40, 'x') +
                                "' --out " + (dir / "report-long").string());
  EXPECT_EQ(long_prompt.code, 2) << long_prompt.out;
  EXPECT_NE(long_prompt.out.find("model.context 32"), std::string::npos) << long_prompt.out;

  // Refused, exit 2 or 4, nothing written: a cache for another context, random windows, a
  // top-K beyond the vocabulary, a student of another vocabulary, a truncated cache.
  const std::vector<std::tuple<std::string, int, std::string>> refused = {
      {"train " + distill + cache + "model.context=16", 2, "the context: blocks of 32 tokens"},
      {"train " + distill + cache + "data.windows=random", 2, "data.windows=blocks"},
      {"cache-teacher " + distill + cache + "distill.cache.top_k=300", 2, "distill.cache.top_k"},
      {"train " + distill + "model.vocab_size=300", 2, "teacher's vocabulary has 256 tokens"}};
  for (const auto& [args, code, message] : refused) {
    auto r = run_retort(args + " run.dir=" + (dir / "refused").string());
    EXPECT_EQ(r.code, code) << args << ": " << r.out;
    EXPECT_NE(r.out.find(message), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(dir / "refused")) << args;
  }
  fs::resize_file(dir / "cache" / "logp.bin", 100);
  auto truncated = run_retort("train " + distill + cache + "run.dir=" + (dir / "refused").string());
  EXPECT_EQ(truncated.code, 4) << truncated.out;
  EXPECT_NE(truncated.out.find("logp.bin': 100 bytes"), std::string::npos) << truncated.out;
  EXPECT_FALSE(fs::exists(dir / "refused"));
}

// A trained gpt pruned to a smaller dense gpt (fewer channels, layers, heads and neurons),
// then fine-tuned from the pruned run, evaluated and sampled; GPT-2 export refuses its heads.
TEST(Cli, LanguageModelPruneFineTuneEval) {
  const TempDir dir("lm-prune", false);
  const std::string tokens = (dir / "tokens").string(), teacher = (dir / "teacher").string(),
                    pruned = (dir / "pruned").string(), tuned = (dir / "tuned").string();
  ASSERT_EQ(run_retort("tokenize README.md " + tokens).code, 0);
  const std::string data = " data.root=" + tokens + " data.subset=64 data.batch_size=16 trainer.threads=1 "
                           "data.eval_tokens=512 amp.mode=off trainer.max_steps=";
  auto t = run_retort("train recipes/text/lm_teacher.yaml model.context=32 model.dim=32 model.depth=3 model.heads=4" +
                      data + "4 run.dir=" + teacher);
  ASSERT_EQ(t.code, 0) << t.out;

  auto too_many = run_retort("prune " + teacher + " prune.gpt.heads=8 run.dir=" + (dir / "bad").string());
  EXPECT_EQ(too_many.code, 2) << too_many.out;
  for (const char* needle : {"prune.gpt.heads", "8", "4 heads per layer", "1..4"})
    EXPECT_NE(too_many.out.find(needle), std::string::npos) << needle << " in " << too_many.out;
  EXPECT_FALSE(fs::exists(dir / "bad"));

  // 2 of 4 heads of width 8 in a model of width 24: the pruned config states head_dim.
  auto p = run_retort("prune " + teacher + " 'prune.gpt={dim: 24, depth: 2, heads: 2, mlp_dim: 64, calibration: 20}' run.dir=" +
                      pruned);
  ASSERT_EQ(p.code, 0) << p.out;
  for (const char* needle : {"block influence", "importance on 640 calibration tokens", "compacted:",
                             "retort train recipes/text/lm_prune.yaml prune.from="})
    EXPECT_NE(p.out.find(needle), std::string::npos) << needle << " in " << p.out;
  const std::string config = retort::read_file(dir / "pruned" / "config" / "config.yaml");
  for (const char* needle : {"dim: 24", "depth: 2", "heads: 2", "mlp_dim: 64", "head_dim: 8"})
    EXPECT_NE(config.find(needle), std::string::npos) << needle << " in " << config;
  auto e = run_retort("eval " + pruned);
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("perplexity"), std::string::npos) << e.out;

  auto f = run_retort("train recipes/text/lm_prune.yaml prune.from=" + pruned + data + "4 run.dir=" + tuned);
  ASSERT_EQ(f.code, 0) << f.out;
  EXPECT_NE(retort::read_file(dir / "tuned" / "config" / "config.yaml").find("head_dim: 8"), std::string::npos);
  // Nothing is masked in a compacted gpt: its fine-tuning resumes like any run.
  auto resumed = run_retort("train recipes/text/lm_prune.yaml prune.from=" + pruned + data +
                            "6 trainer.resume=auto run.dir=" + tuned);
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resumed from"), std::string::npos) << resumed.out;
  auto e2 = run_retort("eval " + tuned);
  ASSERT_EQ(e2.code, 0) << e2.out;
  EXPECT_NE(e2.out.find("bits per byte"), std::string::npos) << e2.out;
  auto rep = run_retort("report " + teacher + " " + tuned + " --repeats 1 --warmup 0 --batch 2 --sample-tokens 4 --out " +
                 (dir / "report").string());
  ASSERT_EQ(rep.code, 0) << rep.out;
  const auto rows = nlohmann::json::parse(retort::read_file(dir / "report" / "report.json")).at("runs");
  EXPECT_EQ(rows.at(0).at("role"), "");  // no distilled run names it as its teacher
  EXPECT_EQ(rows.at(1).at("role"), "pruned");
  EXPECT_TRUE(rows.at(1).at("gap_closed").is_null());
  auto g = run_retort("generate " + tuned + " --prompt 'retort' --tokens 8 --seed 1");
  ASSERT_EQ(g.code, 0) << g.out;
  EXPECT_EQ(g.out.rfind("retort", 0), 0u) << g.out;

  const std::string exported = (dir / "export" / "model.safetensors").string();
  auto x = run_retort("export " + tuned + " " + exported);
  EXPECT_EQ(x.code, 2) << x.out;
  EXPECT_NE(x.out.find("model.head_dim: 8"), std::string::npos) << x.out;
  EXPECT_FALSE(fs::exists(exported));
}

TEST(Cli, LanguageModelBadInputsNameTheFileAndWriteNothing) {
  const TempDir dir("lm-bad", false);
  fs::create_directories(dir);
  retort::write_file_atomic(dir / "empty.txt", "");
  auto empty = run_retort("tokenize " + (dir / "empty.txt").string() + " " + (dir / "tokens").string());
  EXPECT_EQ(empty.code, 3) << empty.out;
  EXPECT_NE(empty.out.find("empty.txt"), std::string::npos) << empty.out;
  EXPECT_FALSE(fs::exists(dir / "tokens"));

  auto missing = run_retort("train recipes/text/lm_teacher.yaml data.root=" + (dir / "none").string() +
                            " run.dir=" + (dir / "run").string());
  EXPECT_EQ(missing.code, 3) << missing.out;
  EXPECT_NE(missing.out.find("retort tokenize"), std::string::npos) << missing.out;
  EXPECT_FALSE(fs::exists(dir / "run"));

  // A nanoGPT .bin whose token 5 is beyond the model's 256 ids.
  fs::create_directories(dir / "bin");
  std::string raw;
  for (uint16_t v : {1, 2, 3, 4, 5, 300, 7}) raw.append(reinterpret_cast<const char*>(&v), 2);
  retort::write_file_atomic(dir / "bin" / "train.bin", raw);
  retort::write_file_atomic(dir / "bin" / "val.bin", raw);
  auto range = run_retort("train recipes/text/lm_teacher.yaml data.root=" + (dir / "bin").string() +
                          " model.context=4 run.dir=" + (dir / "run2").string());
  EXPECT_EQ(range.code, 3) << range.out;
  EXPECT_NE(range.out.find("train.bin"), std::string::npos) << range.out;
  EXPECT_NE(range.out.find("5"), std::string::npos) << range.out;
  EXPECT_FALSE(fs::exists(dir / "run2"));
}
