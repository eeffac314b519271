#pragma once
/// The tables of `retort report`: a row per measured run, the roles and the gap each run
/// closes found among the rows, the means over seeds, and the markdown, CSV and JSON made
/// from them. cli/report.cpp measures the runs; this only arranges what it measured.
///   report_table::assign_roles(rows);  report_table::assign_gaps(rows);
///   std::cout << report_table::markdown(rows, samples);
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/generate.h"

namespace retort::cli::report_table {

/// One run as measured (cli/report.cpp fills everything but role and gap_closed).
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
  bool distilled = false, pruned = false, quantized = false;
  std::string distill_teacher;  // canonical run dir of the teacher, distilled runs only
  std::string model_yaml;       // to recognize the baseline of a distilled student
  std::string seedless_config;  // the config without run.* and trainer.seed: rows alike but for the seed
  std::string run_canonical;
  /// Higher is better: accuracy, or minus the evaluation loss of a language model.
  double quality() const { return language_model() ? -test_loss : accuracy; }
};

/// The samples language models generate: every run continues `prompt` with `options`
/// (options.tokens 0: no samples).
struct Samples {
  std::string prompt = "The ";
  models::GenerateOptions options{96, 0.8, 0, 0};
};

/// Roles: the teacher a distilled run names; "distilled", "pruned" (fine-tuned from a pruned
/// run) and "pruned + distilled" from each run's own config; "baseline": trained alone from
/// scratch with a distilled student's architecture; "" for any other run. An int8 run
/// (retort quantize) is its source's role with ", int8" ("int8" alone), never a teacher or
/// a baseline.
void assign_roles(std::vector<Row>& rows);

/// Each run's share of the gap between the baselines' mean and the teacher, when the rows
/// hold both (and they differ): (q_run - q_baseline) / (q_teacher - q_baseline).
void assign_gaps(std::vector<Row>& rows);

/// The table, a line on how it was timed, the means over seeds (when some configuration has
/// several seeds) and, for language models, each run's sample.
std::string markdown(const std::vector<Row>& rows, const Samples& samples);

/// A row's named values, column after column as the markdown table shows them (unrounded).
using Fields = std::vector<std::pair<std::string, nlohmann::ordered_json>>;
std::vector<Fields> table_values(const std::vector<Row>& rows);

/// The table as CSV: a header line of the value names, then one line per run.
std::string csv(const std::vector<Fields>& table);

/// The table as JSON: an array with one object per run, its values named as in the CSV.
nlohmann::ordered_json json_rows(const std::vector<Fields>& table);

/// report.json's "runs" (everything measured of each) and "seed_means".
nlohmann::json to_json(const std::vector<Row>& rows);

}  // namespace retort::cli::report_table
