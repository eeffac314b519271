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
// baseline rows. Memory: "weights" is the bytes of parameters and
// buffers; "peak forward" is the growth of the process's peak resident set (VmHWM, reset
// through /proc/self/clear_refs before each run) during those forwards, i.e. activations
// and workspace of one batch over the resident weights (n/a where the kernel refuses the
// reset).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "amp/amp.h"
#include "cli/commands.h"
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

struct ReportArgs {
  Args positionals;        // run or checkpoint directories and overrides, as given
  std::string out = "report";
  std::string csv, json;   // the table also as CSV / JSON, when set
  int64_t warmup = 3;
  int64_t repeats = 20;
  int64_t threads = 0;   // every run is timed with these intra-op threads (0: the cores available)
  int64_t batch = 256;   // ... on a batch of this many test samples (at most the test split)
  std::string prompt = "The ";  // language models: each run continues it ...
  models::GenerateOptions sample{96, 0.8, 0, 0};  // ... with these options (tokens 0: no samples)
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

struct Row {
  std::string run, checkpoint, role, model, amp;
  int64_t step = 0, parameters = 0, batch = 0, threads = 0, test_samples = 0, seed = 0;
  double weights_mb = 0, accuracy = 0, test_loss = 0;
  std::optional<double> ppl, bpb;     // language models only (bpb: token files that know their bytes)
  /// Then quality is test_loss, ppl and bpb, not accuracy.
  bool language_model() const { return ppl.has_value(); }
  double batch_ms = 0, batch_ms_min = 0, sample_ms = 0;
  std::optional<double> peak_forward_mb;
  std::optional<double> tokens_per_s;  // language models: tokens of the timed batch per second
  std::optional<double> gap_closed;    // when the rows hold the teacher and a baseline
  std::string sample;                  // language models: the prompt and what the run adds to it
  bool distilled = false, pruned = false;
  std::string distill_teacher;  // canonical run dir of the teacher, distilled runs only
  std::string model_yaml;       // to recognize the baseline of a distilled student
  std::string seedless_config;  // the config without run.* and trainer.seed: rows alike but for the seed
  std::string run_canonical;
  /// Higher is better: accuracy, or minus the evaluation loss of a language model.
  double quality() const { return language_model() ? -test_loss : accuracy; }
};

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

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); }

using Fields = std::vector<std::pair<std::string, nlohmann::ordered_json>>;

/// One column of the printed table: its header, the text of a row's cell, and the named
/// values behind that text (numbers as numbers, null where n/a), which CSV and JSON carry.
struct Column {
  std::string header;
  bool numeric = false;  // right-aligned
  std::function<std::string(const Row&)> text;
  std::function<Fields(const Row&)> fields;
};

/// The run the distilled runs name as their teacher, when it is among the rows.
const Row* teacher_of(const std::vector<Row>& rows) {
  const Row* teacher = nullptr;
  for (const auto& r : rows)
    if (r.role == "teacher") teacher = &r;
  return teacher;
}

/// The ratios to the teacher: parameters, and latency per sample (the teacher's over the run's).
void add_teacher_columns(std::vector<Column>& columns, const Row& teacher) {
  const Row* t = &teacher;
  auto size = [t](const Row& r) { return static_cast<double>(r.parameters) / static_cast<double>(t->parameters); };
  auto speed = [t](const Row& r) { return t->sample_ms / std::max(r.sample_ms, 1e-12); };
  columns.push_back({"size vs teacher", true, [size](const Row& r) { return fixed(size(r), 3) + "x"; },
                     [size](const Row& r) { return Fields{{"size_vs_teacher", size(r)}}; }});
  columns.push_back({"speed vs teacher", true, [speed](const Row& r) { return fixed(speed(r), 2) + "x"; },
                     [speed](const Row& r) { return Fields{{"speed_vs_teacher", speed(r)}}; }});
}

/// How good each run is: test accuracy, or for language models the evaluation loss,
/// perplexity and bits per byte.
std::vector<Column> quality_columns(bool language_model) {
  if (!language_model)
    return {{"test accuracy", true, [](const Row& r) { return fixed(100 * r.accuracy, 2) + " %"; },
             [](const Row& r) { return Fields{{"test_accuracy", r.accuracy}}; }}};
  auto optional = [](const std::optional<double>& v) { return v ? nlohmann::ordered_json(*v) : nullptr; };
  return {{"eval loss", true, [](const Row& r) { return fixed(r.test_loss, 4); },
           [](const Row& r) { return Fields{{"eval_loss", r.test_loss}}; }},
          {"perplexity", true, [](const Row& r) { return r.ppl ? fixed(*r.ppl, 3) : std::string("n/a"); },
           [optional](const Row& r) { return Fields{{"perplexity", optional(r.ppl)}}; }},
          {"bits per byte", true, [](const Row& r) { return r.bpb ? fixed(*r.bpb, 4) : std::string("n/a"); },
           [optional](const Row& r) { return Fields{{"bits_per_byte", optional(r.bpb)}}; }}};
}

/// Every column of the table in order: markdown, CSV and JSON are all made from these.
/// The rows are all language models or all not (report() checks).
std::vector<Column> table_columns(const std::vector<Row>& rows) {
  const Row* teacher = teacher_of(rows);
  std::vector<Column> columns = {
      {"run", false, [](const Row& r) { return r.run + " (step " + std::to_string(r.step) + ")"; },
       [](const Row& r) { return Fields{{"run", r.run}, {"step", r.step}}; }},
      {"role", false, [](const Row& r) { return r.role.empty() ? std::string("-") : r.role; },
       [](const Row& r) { return Fields{{"role", r.role}}; }},
      {"model", false, [](const Row& r) { return r.model; },
       [](const Row& r) { return Fields{{"model", r.model}}; }},
      {"parameters", true, [](const Row& r) { return std::to_string(r.parameters); },
       [](const Row& r) { return Fields{{"parameters", r.parameters}}; }},
      {"weights MB", true, [](const Row& r) { return fixed(r.weights_mb, 2); },
       [](const Row& r) { return Fields{{"weights_mb", r.weights_mb}}; }},
      {"latency ms / batch", true,
       [](const Row& r) { return fixed(r.batch_ms, 2) + " (batch " + std::to_string(r.batch) + ")"; },
       [](const Row& r) { return Fields{{"latency_ms_per_batch", r.batch_ms}, {"batch", r.batch}}; }},
      {"latency ms / sample", true, [](const Row& r) { return fixed(r.sample_ms, 4); },
       [](const Row& r) { return Fields{{"latency_ms_per_sample", r.sample_ms}}; }},
      {"peak forward MB", true,
       [](const Row& r) { return r.peak_forward_mb ? fixed(*r.peak_forward_mb, 1) : std::string("n/a"); },
       [](const Row& r) {
         return Fields{{"peak_forward_mb", r.peak_forward_mb ? nlohmann::ordered_json(*r.peak_forward_mb) : nullptr}};
       }},
      {"threads", true, [](const Row& r) { return std::to_string(r.threads); },
       [](const Row& r) { return Fields{{"threads", r.threads}}; }},
      {"amp", false, [](const Row& r) { return r.amp; }, [](const Row& r) { return Fields{{"amp", r.amp}}; }},
  };
  auto optional = [](const std::optional<double>& v, int digits) { return v ? fixed(*v, digits) : std::string("n/a"); };
  auto value = [](const std::optional<double>& v) { return v ? nlohmann::ordered_json(*v) : nullptr; };
  if (rows.front().language_model())
  // After "latency ms / sample": the same timed forwards, as throughput.
    columns.insert(columns.begin() + 7, {"tokens / s", true, [optional](const Row& r) { return optional(r.tokens_per_s, 0); },
                                         [value](const Row& r) { return Fields{{"tokens_per_s", value(r.tokens_per_s)}}; }});
  const auto quality = quality_columns(rows.front().language_model());
  columns.insert(columns.begin() + 5, quality.begin(), quality.end());  // after "weights MB"
  if (std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.gap_closed.has_value(); }))
    columns.insert(columns.begin() + 5 + static_cast<std::ptrdiff_t>(quality.size()),
                   {"gap closed", true, [](const Row& r) { return r.gap_closed ? fixed(100 * *r.gap_closed, 1) + " %" : ""; },
                    [value](const Row& r) { return Fields{{"gap_closed", value(r.gap_closed)}}; }});
  if (teacher) add_teacher_columns(columns, *teacher);
  return columns;
}

/// Runs alike but for trainer.seed, in the order of their first row.
struct SeedGroup {
  std::vector<const Row*> rows;
  double quality_mean() const { return mean(values([](const Row& r) { return r.quality(); })); }
  double quality_sd() const {
    const auto q = values([](const Row& r) { return r.quality(); });
    const double m = mean(q);
    double ss = 0;
    for (double v : q) ss += (v - m) * (v - m);
    return q.size() > 1 ? std::sqrt(ss / static_cast<double>(q.size() - 1)) : 0.0;
  }
  std::optional<double> mean_of(const std::function<std::optional<double>(const Row&)>& field) const {
    std::vector<double> v;
    for (const Row* r : rows)
      if (field(*r)) v.push_back(*field(*r));
    return v.size() == rows.size() ? std::optional<double>(mean(v)) : std::nullopt;
  }
  std::vector<double> values(const std::function<double(const Row&)>& field) const {
    std::vector<double> v;
    for (const Row* r : rows) v.push_back(field(*r));
    return v;
  }
  std::string seeds() const {
    std::vector<std::string> v;
    for (const Row* r : rows) v.push_back(std::to_string(r->seed));
    return join(v);
  }
};

std::vector<SeedGroup> seed_groups(const std::vector<Row>& rows) {
  std::vector<SeedGroup> groups;
  for (const auto& r : rows) {
    auto g = std::find_if(groups.begin(), groups.end(),
                          [&r](const SeedGroup& g) { return g.rows.front()->seedless_config == r.seedless_config; });
    if (g == groups.end()) groups.push_back({{&r}});
    else g->rows.push_back(&r);
  }
  return groups;
}

bool any_seeds_repeated(const std::vector<SeedGroup>& groups) {
  return std::any_of(groups.begin(), groups.end(), [](const SeedGroup& g) { return g.rows.size() > 1; });
}

/// The means over seeds, a row per group of runs alike but for trainer.seed.
std::string seed_means_markdown(const std::vector<SeedGroup>& groups) {
  const bool lm = groups.front().rows.front()->language_model();
  std::ostringstream s;
  s << "\n### Means over seeds\n\n| runs | role | seeds | " << (lm ? "eval loss" : "test accuracy") << " | sd |"
    << (lm ? " bits per byte |" : "") << " gap closed |\n|---|---|---|---:|---:|" << (lm ? "---:|" : "") << "---:|\n";
  for (const auto& g : groups) {
    const Row& first = *g.rows.front();
    const double q = g.quality_mean(), sd = g.quality_sd();
    s << "| " << first.run << (g.rows.size() > 1 ? " and " + std::to_string(g.rows.size() - 1) + " more" : "") << " | "
      << (first.role.empty() ? "-" : first.role) << " | " << g.seeds() << " | "
      << (lm ? fixed(-q, 4) : fixed(100 * q, 2) + " %") << " | "
      << (g.rows.size() < 2 ? "" : lm ? fixed(sd, 4) : fixed(100 * sd, 2)) << " |";
    if (lm) {
      const auto bpb = g.mean_of([](const Row& r) { return r.bpb; });
      s << " " << (bpb ? fixed(*bpb, 4) : "n/a") << " |";
    }
    const auto gap = g.mean_of([](const Row& r) { return r.gap_closed; });
    s << " " << (gap ? fixed(100 * *gap, 1) + " %" : "") << " |\n";
  }
  return s.str();
}

/// What each language model generates from the same prompt with the same sampler.
std::string samples_markdown(const std::vector<Row>& rows, const ReportArgs& a) {
  std::ostringstream s;
  s << "\n### Samples\n\nEach run continues the prompt \"" << a.prompt << "\" by " << a.sample.tokens
    << " tokens (fewer where its context is shorter), temperature " << a.sample.temperature
    << (a.sample.top_k > 0 ? ", top " + std::to_string(a.sample.top_k) : "") << ", seed " << a.sample.seed << ".\n";
  for (const auto& r : rows)
    s << "\n" << r.run << (r.role.empty() ? "" : " (" + r.role + ")") << ":\n\n```text\n" << r.sample << "\n```\n";
  return s.str();
}

std::string markdown(const std::vector<Row>& rows, const ReportArgs& a) {
  const auto columns = table_columns(rows);
  std::ostringstream s;
  s << "|";
  for (const auto& c : columns) s << " " << c.header << " |";
  s << "\n|";
  for (const auto& c : columns) s << (c.numeric ? "---:|" : "---|");
  s << "\n";
  for (const auto& r : rows) {
    s << "|";
    for (const auto& c : columns) s << " " << c.text(r) << " |";
    s << "\n";
  }
  s << "\nLatency: median of the timed forwards (eval mode, no gradients) on one test batch, every run with the "
       "same threads and batch; speed vs teacher: the teacher's latency per sample over the run's; "
       "peak forward: growth of the peak resident set over the resident weights during those forwards.";
  if (std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.gap_closed.has_value(); }))
    s << " Gap closed: the share of the gap between the baselines' mean and the teacher that the run closes.";
  s << "\n";
  const auto groups = seed_groups(rows);
  if (any_seeds_repeated(groups)) s << seed_means_markdown(groups);
  if (rows.front().language_model() && a.sample.tokens > 0) s << samples_markdown(rows, a);
  return s.str();
}

/// Each row's values, column after column: what CSV and JSON carry.
std::vector<Fields> table_values(const std::vector<Row>& rows) {
  const auto columns = table_columns(rows);
  std::vector<Fields> table;
  for (const auto& r : rows) {
    Fields row;
    for (const auto& c : columns) {
      Fields more = c.fields(r);
      row.insert(row.end(), more.begin(), more.end());
    }
    table.push_back(std::move(row));
  }
  return table;
}

/// A CSV field (RFC 4180): a number as JSON writes it (every digit it needs to read back),
/// text quoted when it holds a comma, quote or line break, nothing for null.
std::string csv_field(const nlohmann::ordered_json& value) {
  if (value.is_null()) return "";
  if (!value.is_string()) return value.dump();
  const auto text = value.get<std::string>();
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

/// The table as CSV: a header line of the value names, then one line per run.
std::string csv(const std::vector<Fields>& table) {
  std::ostringstream s;
  for (size_t i = 0; i < table.front().size(); ++i) s << (i ? "," : "") << table.front()[i].first;
  s << "\n";
  for (const auto& row : table) {
    for (size_t i = 0; i < row.size(); ++i) s << (i ? "," : "") << csv_field(row[i].second);
    s << "\n";
  }
  return s.str();
}

/// The table as JSON: an array with one object per run, its values named as in the CSV.
nlohmann::ordered_json json_rows(const std::vector<Fields>& table) {
  auto rows = nlohmann::ordered_json::array();
  for (const auto& row : table) {
    auto object = nlohmann::ordered_json::object();
    for (const auto& [name, value] : row) object[name] = value;
    rows.push_back(std::move(object));
  }
  return rows;
}

nlohmann::json to_json(const std::vector<Row>& rows, const ReportArgs& a) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json j = {{"run", r.run},
                        {"checkpoint", r.checkpoint},
                        {"step", r.step},
                        {"seed", r.seed},
                        {"role", r.role},
                        {"model", r.model},
                        {"parameters", r.parameters},
                        {"weights_mb", r.weights_mb},
                        {"test_accuracy", r.accuracy},
                        {"test_loss", r.test_loss},
                        {"test_samples", r.test_samples},
                        {"batch", r.batch},
                        {"latency_ms_per_batch", r.batch_ms},
                        {"latency_ms_per_batch_min", r.batch_ms_min},
                        {"latency_ms_per_sample", r.sample_ms},
                        {"threads", r.threads},
                        {"amp", r.amp}};
    auto optional = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    j["peak_forward_mb"] = optional(r.peak_forward_mb);
    j["gap_closed"] = optional(r.gap_closed);
    if (r.language_model()) {
      j["language_model"] = true;
      j["ppl"] = optional(r.ppl);
      j["bpb"] = optional(r.bpb);
      j["tokens_per_s"] = optional(r.tokens_per_s);
      j["sample"] = r.sample;
    }
    runs.push_back(j);
  }
  nlohmann::json means = nlohmann::json::array();
  for (const auto& g : seed_groups(rows)) {
    nlohmann::json m = {{"runs", nlohmann::json::array()}, {"seeds", nlohmann::json::array()}, {"role", g.rows.front()->role}};
    for (const Row* r : g.rows) {
      m["runs"].push_back(r->run);
      m["seeds"].push_back(r->seed);
    }
    const bool lm = g.rows.front()->language_model();
    m[lm ? "test_loss" : "test_accuracy"] = lm ? -g.quality_mean() : g.quality_mean();
    m[lm ? "test_loss_sd" : "test_accuracy_sd"] = g.quality_sd();
    const auto gap = g.mean_of([](const Row& r) { return r.gap_closed; });
    m["gap_closed"] = gap ? nlohmann::json(*gap) : nlohmann::json(nullptr);
    if (lm) {
      const auto bpb = g.mean_of([](const Row& r) { return r.bpb; });
      m["bpb"] = bpb ? nlohmann::json(*bpb) : nlohmann::json(nullptr);
    }
    means.push_back(m);
  }
  return {{"retort", RETORT_VERSION},
          {"warmup", a.warmup},
          {"repeats", a.repeats},
          {"threads", a.threads},
          {"batch", a.batch},
          {"memory", "weights_mb: parameters + buffers; peak_forward_mb: VmHWM growth over VmRSS during the forwards"},
          {"runs", runs},
          {"seed_means", means}};
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
std::string generate_sample(models::Model& model, const RunConfig& rc, const ReportArgs& a) {
  if (a.sample.tokens == 0) return "";
  const auto tokenizer = data::make_tokenizer(rc.data.tokenizer);
  const auto ids = tokenizer->encode(a.prompt);
  models::GenerateOptions options = a.sample;
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
  int64_t bytes = 0;
  for (const auto& kv : models::named_state(model)) bytes += kv.second.numel() * kv.second.element_size();
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
    r.sample = generate_sample(model, rc, a);
  }
  return r;
}

/// Roles: the teacher a distilled run names; distilled and pruned (fine-tuned from a pruned
/// run) runs; the baseline: trained alone from scratch with a distilled student's architecture.
void assign_roles(std::vector<Row>& rows) {
  for (auto& r : rows) {
    r.role = r.pruned && r.distilled ? "pruned + distilled" : r.pruned ? "pruned" : r.distilled ? "distilled" : "";
    for (const auto& d : rows) {
      if (!r.role.empty() || !d.distilled) continue;
      if (!d.distill_teacher.empty() && d.distill_teacher == r.run_canonical) r.role = "teacher";
      else if (!d.pruned && d.model_yaml == r.model_yaml && !r.pruned) r.role = "baseline";
    }
  }
}

/// Each run's share of the gap between the baselines' mean and the teacher, when the rows
/// hold both (and they differ).
void assign_gaps(std::vector<Row>& rows) {
  const Row* teacher = teacher_of(rows);
  std::vector<double> baselines;
  for (const auto& r : rows)
    if (r.role == "baseline") baselines.push_back(r.quality());
  if (!teacher || baselines.empty()) return;
  const double baseline = mean(baselines), gap = teacher->quality() - baseline;
  if (gap == 0) return;
  for (auto& r : rows)
    if (r.role != "teacher" && r.role != "baseline") r.gap_closed = (r.quality() - baseline) / gap;
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

/// Prints the table and writes <out>/report.md, <out>/report.json and the --csv / --json files.
void write_report(const std::vector<Row>& rows, const ReportArgs& a) {
  const std::string table = markdown(rows, a);
  std::cout << table;
  const fs::path out = a.out;
  std::vector<std::string> written = {(out / "report.md").string(), (out / "report.json").string()};
  write_file_atomic(out / "report.md", "# retort report\n\n" + table);
  // A byte-level model's sample need not be valid UTF-8: JSON carries U+FFFD for such bytes.
  write_file_atomic(out / "report.json",
                    to_json(rows, a).dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  const auto values = table_values(rows);
  if (!a.csv.empty()) {
    write_file_atomic(a.csv, csv(values));
    written.push_back(a.csv);
  }
  if (!a.json.empty()) {
    write_file_atomic(a.json, json_rows(values).dump(1) + "\n");
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
  assign_roles(rows);
  assign_gaps(rows);
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
  app.add_option("--prompt", a->prompt, "language models: the text each run continues in the samples")->capture_default_str();
  add_integer_flag(app, "--sample-tokens", a->sample.tokens, 0,
                   "language models: tokens each run adds to the prompt (fewer where its context is shorter); 0: no samples");
  app.add_option("--temperature", a->sample.temperature, "language models: the samples' temperature; 0: greedy")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--seed", a->sample.seed, "language models: the samples' seed, the same for every run")->capture_default_str();
  return [a](launch::World& world) { return report(world, *a); };
}

}  // namespace retort::cli
