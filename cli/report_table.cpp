// The tables of `retort report` (cli/report.cpp measures the runs).
#include "cli/report_table.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "core/text.h"

namespace retort::cli::report_table {
namespace {

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

/// A value that may be n/a, as text.
std::string fixed_or(const std::optional<double>& v, int digits, const std::string& none) {
  return v ? fixed(*v, digits) : none;
}

/// A share as a percentage, or nothing when n/a.
std::string percent_or_empty(const std::optional<double>& v) { return v ? fixed(100 * *v, 1) + " %" : ""; }

/// A value that may be n/a, as JSON (null when n/a).
template <class Json>
Json or_null(const std::optional<double>& v) {
  return v ? Json(*v) : Json(nullptr);
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); }

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
  using J = nlohmann::ordered_json;
  return {{"eval loss", true, [](const Row& r) { return fixed(r.test_loss, 4); },
           [](const Row& r) { return Fields{{"eval_loss", r.test_loss}}; }},
          {"perplexity", true, [](const Row& r) { return fixed_or(r.ppl, 3, "n/a"); },
           [](const Row& r) { return Fields{{"perplexity", or_null<J>(r.ppl)}}; }},
          {"bits per byte", true, [](const Row& r) { return fixed_or(r.bpb, 4, "n/a"); },
           [](const Row& r) { return Fields{{"bits_per_byte", or_null<J>(r.bpb)}}; }}};
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
       [](const Row& r) { return fixed_or(r.peak_forward_mb, 1, "n/a"); },
       [](const Row& r) { return Fields{{"peak_forward_mb", or_null<nlohmann::ordered_json>(r.peak_forward_mb)}}; }},
      {"threads", true, [](const Row& r) { return std::to_string(r.threads); },
       [](const Row& r) { return Fields{{"threads", r.threads}}; }},
      {"amp", false, [](const Row& r) { return r.amp; }, [](const Row& r) { return Fields{{"amp", r.amp}}; }},
  };
  using J = nlohmann::ordered_json;
  // After "latency ms / sample": the same timed forwards, as throughput.
  if (rows.front().language_model())
    columns.insert(columns.begin() + 7, {"tokens / s", true, [](const Row& r) { return fixed_or(r.tokens_per_s, 0, "n/a"); },
                                         [](const Row& r) { return Fields{{"tokens_per_s", or_null<J>(r.tokens_per_s)}}; }});
  const auto quality = quality_columns(rows.front().language_model());
  columns.insert(columns.begin() + 5, quality.begin(), quality.end());  // after "weights MB"
  if (std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.gap_closed.has_value(); }))
    columns.insert(columns.begin() + 5 + static_cast<std::ptrdiff_t>(quality.size()),
                   {"gap closed", true, [](const Row& r) { return percent_or_empty(r.gap_closed); },
                    [](const Row& r) { return Fields{{"gap_closed", or_null<J>(r.gap_closed)}}; }});
  if (teacher) add_teacher_columns(columns, *teacher);
  return columns;
}

/// Runs alike but for trainer.seed, in the order of their first row.
struct SeedGroup {
  std::vector<const Row*> rows;
  std::vector<double> qualities() const {
    std::vector<double> q;
    for (const Row* r : rows) q.push_back(r->quality());
    return q;
  }
  double quality_mean() const { return mean(qualities()); }
  /// The sample standard deviation; 0 for one run.
  double quality_sd() const {
    const auto q = qualities();
    const double m = mean(q);
    double ss = 0;
    for (double v : q) ss += (v - m) * (v - m);
    return q.size() > 1 ? std::sqrt(ss / static_cast<double>(q.size() - 1)) : 0.0;
  }
  /// The mean of an optional field, n/a unless every run has it.
  std::optional<double> mean_of(std::optional<double> Row::*field) const {
    std::vector<double> v;
    for (const Row* r : rows)
      if (r->*field) v.push_back(*(r->*field));
    return v.size() == rows.size() ? std::optional<double>(mean(v)) : std::nullopt;
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
    if (lm) s << " " << fixed_or(g.mean_of(&Row::bpb), 4, "n/a") << " |";
    s << " " << percent_or_empty(g.mean_of(&Row::gap_closed)) << " |\n";
  }
  return s.str();
}

/// What each language model generates from the same prompt with the same sampler.
std::string samples_markdown(const std::vector<Row>& rows, const Samples& a) {
  std::ostringstream s;
  s << "\n### Samples\n\nEach run continues the prompt \"" << a.prompt << "\" by " << a.options.tokens
    << " tokens (fewer where its context is shorter), temperature " << a.options.temperature
    << (a.options.top_k > 0 ? ", top " + std::to_string(a.options.top_k) : "") << ", seed " << a.options.seed << ".\n";
  for (const auto& r : rows)
    s << "\n" << r.run << (r.role.empty() ? "" : " (" + r.role + ")") << ":\n\n```text\n" << r.sample << "\n```\n";
  return s.str();
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

}  // namespace

std::string markdown(const std::vector<Row>& rows, const Samples& samples) {
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
  if (rows.front().language_model() && samples.options.tokens > 0) s << samples_markdown(rows, samples);
  return s.str();
}

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

nlohmann::ordered_json json_rows(const std::vector<Fields>& table) {
  auto rows = nlohmann::ordered_json::array();
  for (const auto& row : table) {
    auto object = nlohmann::ordered_json::object();
    for (const auto& [name, value] : row) object[name] = value;
    rows.push_back(std::move(object));
  }
  return rows;
}

nlohmann::json to_json(const std::vector<Row>& rows) {
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
    using J = nlohmann::json;
    j["peak_forward_mb"] = or_null<J>(r.peak_forward_mb);
    j["gap_closed"] = or_null<J>(r.gap_closed);
    if (r.language_model()) {
      j["language_model"] = true;
      j["ppl"] = or_null<J>(r.ppl);
      j["bpb"] = or_null<J>(r.bpb);
      j["tokens_per_s"] = or_null<J>(r.tokens_per_s);
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
    m["gap_closed"] = or_null<nlohmann::json>(g.mean_of(&Row::gap_closed));
    if (lm) m["bpb"] = or_null<nlohmann::json>(g.mean_of(&Row::bpb));
    means.push_back(m);
  }
  return {{"runs", runs}, {"seed_means", means}};
}

void assign_roles(std::vector<Row>& rows) {
  for (auto& r : rows) {
    r.role = r.pruned && r.distilled ? "pruned + distilled" : r.pruned ? "pruned" : r.distilled ? "distilled" : "";
    if (r.quantized) r.role = r.role.empty() ? "int8" : r.role + ", int8";
    for (const auto& d : rows) {
      if (!r.role.empty() || !d.distilled) continue;
      if (!d.distill_teacher.empty() && d.distill_teacher == r.run_canonical) r.role = "teacher";
      else if (!d.pruned && d.model_yaml == r.model_yaml && !r.pruned) r.role = "baseline";
    }
  }
}

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

}  // namespace retort::cli::report_table
