// `retort report <run_dir> [<run_dir> ...] [key=value ...] [--out report] [--csv FILE] [--json FILE] [--warmup 3]
//                [--repeats 20] [--threads 0] [--batch 256] [--prompt TEXT] [--sample-tokens 96]
//                [--temperature 0.8] [--seed 0]`
// Compares finished runs side by side (teacher, baseline student, distilled student, pruned):
// parameters, weights size, test accuracy (language models: evaluation loss, perplexity, bits
// per byte and forward tokens/s), the share of the baseline-teacher gap a run closes, latency
// per batch and per sample, and the peak memory of a forward pass; the means of runs that
// differ only in trainer.seed; for language models a sample each generates from one prompt.
// Prints markdown and writes <out>/report.md and <out>/report.json, and the per-run table as
// CSV (--csv) or JSON (--json) for plotting.
//   retort report outputs/fmnist-teacher/... outputs/fmnist-student/... outputs/fmnist-distill/...
//
// Each run is read from its newest checkpoint (or a checkpoint directory given directly):
// the model is built from the checkpoint's config.yaml `model:` section, key=value
// overrides apply to every run's config (e.g. data.root=...). Latency: in eval mode,
// without gradients, under the run's amp settings, every run with the same `threads`
// (0: the cores available) on the same batch of `batch` test images or token windows (at
// most the split):
// `warmup` untimed forwards, then the median of `repeats` timed ones; "speed vs teacher"
// is the ratio of latencies per sample. Gap closed: (q_run - q_baseline) / (q_teacher -
// q_baseline), q the test accuracy or minus the evaluation loss, q_baseline the mean over the
// baseline rows. Memory: "weights" is the bytes of the checkpoint's model tensors (parameters
// and buffers; an int8 run's int8 values and scales); "peak forward" is the growth of the
// process's peak resident set (VmHWM, reset through /proc/self/clear_refs before each run)
// during those forwards, i.e. activations and workspace of one batch over the resident
// weights (n/a where the kernel refuses the reset).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "amp/amp.h"
#include "cli/commands.h"
#include "cli/report_table.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/text.h"
#include "core/fs.h"
#include "core/malloc.h"
#include "data/data.h"
#include "launch/communicator.h"
#include "launch/world.h"
#include "models/models.h"
#include "trainer/checkpoint_model.h"
#include "trainer/trainer.h"

namespace retort::cli {
namespace {

namespace fs = std::filesystem;
using report_table::Row;

struct ReportArgs {
  Args positionals;        // run or checkpoint directories and overrides, as given
  std::string out = "report";
  std::string csv, json;   // the table also as CSV / JSON, when set
  int64_t warmup = 3;
  int64_t repeats = 20;
  int64_t threads = 0;   // every run is timed with these intra-op threads (0: the cores available)
  int64_t batch = 256;   // ... on a batch of this many test samples (at most the test split)
  report_table::Samples samples;  // language models: what each run continues, and how
};

std::string list(const std::vector<int64_t>& v) { return "[" + join(v, [](int64_t d) { return std::to_string(d); }) + "]"; }

std::string describe_model(const models::ModelOptions& m) {
  std::ostringstream s;
  s << m.name;
  if (m.name == "cnn")
    s << " " << list(m.channels) << " x" << m.convs_per_stage << " fc " << list(m.hidden);
  else if (m.name == "mlp")
    s << " " << list(m.hidden);
  else if (m.name == "vit")
    s << " d" << m.dim << " L" << m.depth << " h" << m.heads << " p" << m.patch;
  else if (m.name == "gpt")
    s << " d" << m.dim << " L" << m.depth << " h" << m.heads << (m.head_dim > 0 ? "x" + std::to_string(m.head_dim) : "")
      << " ctx" << m.context << " vocab" << m.vocab_size;
  return s.str();
}

/// /proc/self/status field in kB, or -1.
int64_t proc_status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  return -1;
}

/// Resets the peak RSS (VmHWM) to the current RSS; false where the kernel does not allow it.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

struct Timing {
  double median_ms = 0, min_ms = 0;
  std::optional<double> peak_mb;
};

Timing time_forward(models::Model& model, const torch::Tensor& x, const amp::AmpOptions& amp_options,
                    int64_t warmup, int64_t repeats) {
  using Clock = std::chrono::steady_clock;
  model.eval();
  torch::NoGradGuard no_grad;
  Timing t;
  // Memory the runs before this one freed but the process still holds would serve this
  // run's activations without growing the resident set: give it back first, so each run's
  // peak is its own whatever the order.
  release_free_memory();
  const int64_t rss_before = proc_status_kb("VmRSS");
  const bool peak_ok = rss_before > 0 && reset_peak_rss();
  std::vector<double> ms;
  for (int64_t i = 0; i < warmup + repeats; ++i) {
    const auto t0 = Clock::now();
    {
      amp::Autocast autocast(amp_options, x.device().type());
      auto out = model.forward(x);
      // Reading one value waits for the device, so CUDA timings are not just launch times.
      out.logits.sum().item<double>();
    }
    if (i >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  t.median_ms = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  t.min_ms = ms.front();
  const int64_t hwm = proc_status_kb("VmHWM");
  if (peak_ok && hwm > 0) t.peak_mb = static_cast<double>(std::max<int64_t>(0, hwm - rss_before)) / 1024.0;
  return t;
}

std::string canonical_path(const fs::path& p) {
  std::error_code ec;
  auto c = fs::weakly_canonical(p, ec);
  return ec ? p.string() : c.string();
}

using TestSets = std::map<std::string, std::shared_ptr<data::Dataset>>;  // by name|root|subset|context

/// What the run is: its checkpoint, model, amp, seed, whether it was distilled (and from
/// which teacher run, for the roles) or fine-tuned from a pruned run.
void describe_run(Row& r, const trainer::Checkpoint& ckpt, const RunConfig& rc) {
  r.checkpoint = ckpt.dir.string();
  r.step = ckpt.step;
  r.seed = rc.trainer.seed;
  r.model = describe_model(rc.model);
  r.run_canonical = canonical_path(ckpt.dir.parent_path().parent_path());  // <run>/checkpoints/step-N
  r.model_yaml = config::emit(rc.tree["model"]);
  YAML::Node seedless = YAML::Clone(rc.tree);
  seedless.remove("run");
  if (seedless["trainer"]) seedless["trainer"].remove("seed");
  r.seedless_config = config::emit(seedless);
  r.amp = rc.amp.mode == amp::AmpMode::kOff
              ? "off"
              : config::enum_name(rc.amp.mode) + " " + config::enum_name(rc.amp.dtype);
  r.pruned = !rc.prune.from.empty();
  r.distilled = !rc.distill.teacher_checkpoint.empty() || !rc.distill.teacher_weights.empty();
  if (rc.distill.teacher_checkpoint.empty()) return;
  try {
    const auto dir = trainer::Checkpointer::resolve(rc.distill.teacher_checkpoint);
    r.distill_teacher = canonical_path(dir.parent_path().parent_path());
  } catch (const Error&) {
    // The teacher moved or was deleted: the run is still reported, unmatched.
  }
}

/// The first `batch` test samples as the model takes them: normalized images, or token windows.
torch::Tensor first_inputs(const data::Dataset& test_set, const data::DataOptions& o, int64_t batch,
                           const torch::Device& device) {
  if (test_set.text) {
    std::vector<int64_t> indices(static_cast<size_t>(batch));
    std::iota(indices.begin(), indices.end(), int64_t{0});
    return test_set.text->batch(indices, 0).first.to(device);
  }
  const auto stats = data::make_loader_options(o, device, 0);
  return data::normalize(test_set.images.slice(0, 0, batch), stats.mean, stats.stddev).to(device);
}

/// The prompt and what the model adds to it (as many of the asked tokens as fit its
/// context), sampled under the run's amp; empty when asked for none.
std::string generate_sample(models::Model& model, const RunConfig& rc, const report_table::Samples& a) {
  if (a.options.tokens == 0) return "";
  const auto tokenizer = data::make_tokenizer(rc.data.tokenizer);
  const auto ids = tokenizer->encode(a.prompt);
  models::GenerateOptions options = a.options;
  options.tokens = std::min<int64_t>(options.tokens, rc.model.context - static_cast<int64_t>(ids.size()));
  if (options.tokens <= 0)
    throw ConfigError("report: --prompt is " + std::to_string(ids.size()) + " tokens, which fills " + rc.model.name +
                      "'s model.context " + std::to_string(rc.model.context) + "; give a shorter one");
  amp::Autocast autocast(rc.amp, model.parameters().front().device().type());
  const auto next = models::generate(model, std::vector<int64_t>(ids.begin(), ids.end()), options);
  return a.prompt + tokenizer->decode(std::vector<int32_t>(next.begin(), next.end()));
}

/// One run read, sized, evaluated on its test split and timed.
Row measure_run(const std::string& run, const Args& overrides, const ReportArgs& a, const torch::Device& device,
                TestSets& test_sets) {
  Row r;
  r.run = run;
  const auto loaded = trainer::load_checkpoint_model(run);
  const RunConfig rc = checkpoint_run_config(loaded.checkpoint, overrides);
  rc.data.validate();
  describe_run(r, loaded.checkpoint, rc);
  models::Model& model = *loaded.model;
  model.to(device);
  r.parameters = models::count_parameters(model);
  r.quantized = model.quantized();
  if (r.quantized) r.seedless_config += "# int8\n";  // never one group with its fp32 source
  int64_t bytes = 0;  // as stored: an int8 run's int8 tensors
  for (const auto& kv : loaded.checkpoint.model) bytes += kv.second.numel() * kv.second.element_size();
  r.weights_mb = static_cast<double>(bytes) / (1024.0 * 1024.0);
  r.threads = trainer::set_threads(a.threads);

  const auto shape = window_shape(rc);
  auto& test_set =
      test_sets[rc.data.name + "|" + rc.data.root + "|" + std::to_string(rc.data.subset) + "|" + std::to_string(shape.context)];
  if (!test_set) test_set = std::make_shared<data::Dataset>(data::load_dataset(rc.data, "test", shape));
  launch::LocalCommunicator comm;
  const auto eval = trainer::evaluate(model, *test_set, rc.data, device, comm, rc.amp);
  r.accuracy = eval.accuracy;
  r.test_loss = eval.loss;
  r.test_samples = eval.samples;
  if (test_set->text) {
    const auto record = trainer::eval_record(eval, *test_set);
    r.ppl = record["ppl"].get<double>();
    if (record.contains("bpb")) r.bpb = record["bpb"].get<double>();
  }

  r.batch = std::min<int64_t>(a.batch, test_set->size());
  const auto x = first_inputs(*test_set, rc.data, r.batch, device);
  const Timing t = time_forward(model, x, rc.amp, a.warmup, a.repeats);
  r.batch_ms = t.median_ms;
  r.batch_ms_min = t.min_ms;
  r.sample_ms = t.median_ms / static_cast<double>(std::max<int64_t>(1, r.batch));
  r.peak_forward_mb = t.peak_mb;
  if (test_set->text) {
    r.tokens_per_s = static_cast<double>(x.numel()) * 1000.0 / std::max(t.median_ms, 1e-12);
    r.sample = generate_sample(model, rc, a.samples);
  }
  return r;
}

/// A file --csv or --json names: refused now, before minutes of measuring, when it is a
/// directory or its directory cannot be written.
void check_output_file(const std::string& flag, const std::string& file) {
  if (file.empty()) return;
  const fs::path path(file);
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw UsageError("report: " + flag + " '" + file + "' is a directory; expected a file");
  try {
    ensure_writable_dir(path.has_parent_path() ? path.parent_path() : fs::path("."));
  } catch (const Error& e) {
    throw Error("report: " + flag + ": " + e.what());
  }
}

/// report.json: the settings, then every run and the means over seeds.
nlohmann::json report_json(const std::vector<Row>& rows, const ReportArgs& a) {
  nlohmann::json j = report_table::to_json(rows);
  j["retort"] = RETORT_VERSION;
  j["warmup"] = a.warmup;
  j["repeats"] = a.repeats;
  j["threads"] = a.threads;
  j["batch"] = a.batch;
  j["memory"] =
      "weights_mb: the checkpoint's model tensors (an int8 run's as stored); peak_forward_mb: VmHWM growth over "
      "VmRSS during the forwards";
  return j;
}

/// Prints the table and writes <out>/report.md, <out>/report.json and the --csv / --json files.
void write_report(const std::vector<Row>& rows, const ReportArgs& a) {
  const std::string table = report_table::markdown(rows, a.samples);
  std::cout << table;
  const fs::path out = a.out;
  std::vector<std::string> written = {(out / "report.md").string(), (out / "report.json").string()};
  write_file_atomic(out / "report.md", "# retort report\n\n" + table);
  // A byte-level model's sample need not be valid UTF-8: JSON carries U+FFFD for such bytes.
  write_file_atomic(out / "report.json",
                    report_json(rows, a).dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  const auto values = report_table::table_values(rows);
  if (!a.csv.empty()) {
    write_file_atomic(a.csv, report_table::csv(values));
    written.push_back(a.csv);
  }
  if (!a.json.empty()) {
    write_file_atomic(a.json, report_table::json_rows(values).dump(1) + "\n");
    written.push_back(a.json);
  }
  std::cout << "wrote";
  for (size_t i = 0; i < written.size(); ++i)
    std::cout << (i == 0 ? " " : i + 1 == written.size() ? " and " : ", ") << written[i];
  std::cout << "\n";
}

int report(launch::World& world, const ReportArgs& a) {
  const Positionals p = split_positionals(a.positionals, "report", "run (a run or checkpoint directory)", 1, SIZE_MAX);
  if (world.size() > 1) throw UsageError("report: measures in one process; run it without mpirun");
  ensure_writable_dir(a.out);
  check_output_file("--csv", a.csv);
  check_output_file("--json", a.json);
  const torch::Device device = world.pick_device();
  TestSets test_sets;
  std::vector<Row> rows;
  for (const auto& run : p.inputs) {
    rows.push_back(measure_run(run, p.overrides, a, device, test_sets));
    if (rows.back().language_model() == rows.front().language_model()) continue;
    const Row& lm = rows.back().language_model() ? rows.back() : rows.front();
    const Row& image = rows.back().language_model() ? rows.front() : rows.back();
    throw ConfigError("report: " + lm.run + " is a language model and " + image.run +
                      " an image classifier; a report compares runs of one kind");
  }
  report_table::assign_roles(rows);
  report_table::assign_gaps(rows);
  write_report(rows, a);
  return kExitOk;
}

}  // namespace

CommandRun define_report(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  app.add_option("args", a->positionals,
                 "run or checkpoint directories, then overrides applied to every run's config (data.root=...)");
  app.add_option("--out", a->out, "directory for report.md and report.json")->type_name("DIR")->capture_default_str();
  app.add_option("--csv", a->csv, "also write the table as CSV: a header of value names, a line per run")
      ->type_name("FILE");
  app.add_option("--json", a->json, "also write the table as JSON: an array of one object per run")
      ->type_name("FILE");
  add_integer_flag(app, "--warmup", a->warmup, 0, "untimed forwards before the timed ones");
  add_integer_flag(app, "--repeats", a->repeats, 1, "timed forwards, the median reported");
  add_integer_flag(app, "--threads", a->threads, 0, "intra-op threads every run is timed with, 0: the cores available");
  add_integer_flag(app, "--batch", a->batch, 1, "test samples per timed forward (images, or token windows of a language model), at most the test split");
  app.add_option("--prompt", a->samples.prompt, "language models: the text each run continues in the samples")->capture_default_str();
  add_integer_flag(app, "--sample-tokens", a->samples.options.tokens, 0,
                   "language models: tokens each run adds to the prompt (fewer where its context is shorter); 0: no samples");
  app.add_option("--temperature", a->samples.options.temperature, "language models: the samples' temperature; 0: greedy")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--seed", a->samples.options.seed, "language models: the samples' seed, the same for every run")->capture_default_str();
  return [a](launch::World& world) { return report(world, *a); };
}

}  // namespace retort::cli
