#include "trainer/metrics.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <cstdio>

#include "core/error.h"

namespace retort::trainer {

namespace {
// The same sinks minus the console: where the in-place progress line goes at log points.
std::shared_ptr<spdlog::logger>& file_only() {
  static std::shared_ptr<spdlog::logger> log = std::make_shared<spdlog::logger>("retort-file");
  return log;
}
}  // namespace

std::shared_ptr<spdlog::logger> logger() {
  static std::shared_ptr<spdlog::logger> log = [] {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_pattern("%^[%H:%M:%S %l]%$ %v");
    auto l = std::make_shared<spdlog::logger>("retort", console);
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::info);
    return l;
  }();
  return log;
}

void attach_log_file(const std::filesystem::path& file) {
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string());
    sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e %l] %v");
    logger()->sinks().push_back(sink);
    file_only()->sinks().push_back(sink);
    file_only()->flush_on(spdlog::level::info);
  } catch (const spdlog::spdlog_ex& e) {
    throw Error("cannot open log file '" + file.string() + "': " + e.what());
  }
}

void detach_log_files() {
  auto& sinks = logger()->sinks();
  sinks.resize(1);  // the console sink comes first
  file_only()->sinks().clear();
}

Metrics::Metrics(const std::filesystem::path& run_dir, const std::string& mode)
    : start_(std::chrono::steady_clock::now()) {
  off_ = mode == "off";
  in_place_ = mode == "auto" && ::isatty(STDERR_FILENO);
  if (!run_dir.empty()) {
    const auto path = run_dir / "metrics.jsonl";
    jsonl_.open(path, std::ios::app);
    if (!jsonl_) throw Error("cannot open '" + path.string() + "' for writing");
    events_.open(run_dir / "tensorboard");  // a resumed run adds a file; TensorBoard merges them
  }
}

Metrics::~Metrics() { break_line(); }

void Metrics::record(const nlohmann::json& row) {
  if (!jsonl_.is_open()) return;
  jsonl_ << row.dump() << '\n';
  jsonl_.flush();  // a crash keeps every line written so far
  add_scalars(row);
  events_.flush();  // and every scalar
}

// Tags are grouped by the row's kind (train/loss, eval/loss); the step is the x axis, not a
// scalar. Strings ("kind", "overflow") have no place on a chart. A non-finite number, which
// metrics.jsonl can only write as null, is kept: TensorBoard marks it.
void Metrics::add_scalars(const nlohmann::json& row) {
  const auto kind = row.find("kind");
  const std::string group = kind != row.end() && kind->is_string() ? kind->get<std::string>() + "/" : "";
  const auto step = row.find("step");
  const int64_t at = step != row.end() && step->is_number() ? step->get<int64_t>() : 0;
  const double now = unix_seconds();
  for (const auto& field : row.items())
    if (field.value().is_number() && field.key() != "step")
      events_.add_scalar(group + field.key(), field.value().get<double>(), at, now);
}

void Metrics::progress(const ProgressState& s, bool log_point) {
  if (off_) return;
  const auto now = std::chrono::steady_clock::now();
  if (start_step_ < 0) {
    start_step_ = s.step;
    start_ = now;
  }
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const int64_t done = s.step - start_step_;
  const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(s.total_steps - s.step) : 0;
  char line[512];
  std::snprintf(line, sizeof line, "epoch %lld/%lld  step %lld/%lld  loss %.4f  %.0f samples/s  ETA %02d:%02d%s%s",
                static_cast<long long>(s.epoch), static_cast<long long>(s.max_epochs), static_cast<long long>(s.step),
                static_cast<long long>(s.total_steps), s.loss, s.samples_per_s, static_cast<int>(eta) / 60,
                static_cast<int>(eta) % 60, s.extra.empty() ? "" : "  ", s.extra.c_str());
  if (in_place_) {
    std::fprintf(stderr, "\r\033[2K%s", line);
    std::fflush(stderr);
    line_open_ = true;
    if (log_point) file_only()->info("{}", line);
  } else if (log_point) {
    logger()->info("{}", line);
  }
}

void Metrics::break_line() {
  if (line_open_) {
    std::fputc('\n', stderr);
    line_open_ = false;
  }
}

}  // namespace retort::trainer
