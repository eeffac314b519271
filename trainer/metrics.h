#pragma once
/// Run output of rank 0: metrics.jsonl (one JSON object per logged step / eval), the same
/// numbers as TensorBoard scalars in tensorboard/ (tag "<kind>/<field>", at the row's step),
/// train.log (spdlog), and a progress line that updates in place on a terminal and prints
/// plain lines in a log or CI.
///   Metrics metrics(run_dir, "auto");
///   metrics.record({{"kind", "train"}, {"step", 10}, {"loss", 0.5}});  // + scalar train/loss
///   metrics.progress({epoch, step, total, loss, samples_per_s});
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "trainer/tensorboard.h"

namespace retort::trainer {

/// The process-wide "retort" logger: console (stderr) plus, once attached, train.log.
std::shared_ptr<spdlog::logger> logger();
/// Adds run_dir/train.log (or ranks/rank<r>.log for rank > 0) to the logger.
void attach_log_file(const std::filesystem::path& file);
/// Removes every log file attached so far (between the runs of a sweep).
void detach_log_files();

struct ProgressState {
  int64_t epoch = 0;        // 1-based
  int64_t max_epochs = 0;
  int64_t step = 0;         // optimizer steps done
  int64_t total_steps = 0;  // planned optimizer steps
  double loss = 0;
  double samples_per_s = 0;
  std::string extra;        // e.g. per-term losses, loss scale
};

class Metrics {
 public:
  /// mode: auto (in place when stderr is a terminal), plain, off. An empty run_dir writes
  /// no metrics.jsonl and no events file (ranks other than 0).
  Metrics(const std::filesystem::path& run_dir, const std::string& mode);
  ~Metrics();
  /// Appends the row to metrics.jsonl and each of its numeric fields but "step" to the
  /// events file; both are flushed before it returns.
  void record(const nlohmann::json& row);
  /// Updates the in-place display; at a log point also writes the line to train.log (and,
  /// without a terminal, to the console).
  void progress(const ProgressState& s, bool log_point);
  /// Ends an in-place line before other output.
  void break_line();
  bool in_place() const { return in_place_; }

 private:
  void add_scalars(const nlohmann::json& row);

  std::ofstream jsonl_;
  EventWriter events_;
  bool in_place_ = false;
  bool off_ = false;
  bool line_open_ = false;
  std::chrono::steady_clock::time_point start_;
  int64_t start_step_ = -1;
};

}  // namespace retort::trainer
