// `retort report <run_dir> [<run_dir> ...] [--out report] [--warmup N] [--repeats N] [--threads N] [--batch N]
//                [key=value ...]`
#include "cli/report.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "amp/amp.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/data.h"
#include "launch/communicator.h"
#include "launch/world.h"
#include "models/models.h"
#include "trainer/checkpoint.h"
#include "trainer/cpu_allocator.h"
#include "trainer/trainer.h"

namespace retort::cli {
namespace {

namespace fs = std::filesystem;

struct ReportArgs {
  std::vector<std::string> runs;
  std::vector<std::string> overrides;
  fs::path out = "report";
  int64_t warmup = 3;
  int64_t repeats = 20;
  int64_t threads = 0;   // every run is timed with these intra-op threads (0: the cores available)
  int64_t batch = 256;   // ... on a batch of this many test images (at most the test split)
};

int64_t parse_count(const std::string& flag, const std::string& value, int64_t min) {
  try {
    size_t pos = 0;
    const long long v = std::stoll(value, &pos);
    if (pos == value.size() && v >= min) return v;
  } catch (const std::exception&) {
  }
  throw UsageError("report: " + flag + " expects an integer >= " + std::to_string(min) + ", got '" + value + "'");
}

ReportArgs parse_report_args(const std::vector<std::string>& args) {
  ReportArgs a;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw UsageError("report: " + arg + " needs a value");
      return args[++i];
    };
    if (arg == "--out") {
      a.out = value();
    } else if (arg == "--warmup") {
      a.warmup = parse_count(arg, value(), 0);
    } else if (arg == "--repeats") {
      a.repeats = parse_count(arg, value(), 1);
    } else if (arg == "--threads") {
      a.threads = parse_count(arg, value(), 0);
    } else if (arg == "--batch") {
      a.batch = parse_count(arg, value(), 1);
    } else if (arg.rfind("--", 0) == 0) {
      throw UsageError("report: unknown option '" + arg +
                       "' (options: --out, --warmup, --repeats, --threads, --batch)");
    } else if (arg.find('=') != std::string::npos || arg[0] == '~' || arg[0] == '+') {
      a.overrides.push_back(arg);
    } else {
      a.runs.push_back(arg);
    }
  }
  if (a.runs.empty())
    throw UsageError("report: no run given (usage: retort report <run_dir> [<run_dir> ...] [--out report] "
                     "[--warmup N] [--repeats N] [--threads N] [--batch N] [key=value ...])");
  return a;
}

/// The checkpoint's config with the overrides applied, typed.
RunConfig config_of(const trainer::Checkpoint& ckpt, const std::vector<std::string>& overrides) {
  try {
    return read_run_config(compose_stored(ckpt.config_yaml, ckpt.dir / "config.yaml", overrides).config);
  } catch (const ConfigError& e) {
    throw ConfigError("report: the config of " + ckpt.dir.string() + ": " + e.what());
  }
}

std::string list(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string describe_model(const models::ModelOptions& m) {
  std::ostringstream s;
  s << m.name;
  if (m.name == "cnn")
    s << " " << list(m.channels) << " x" << m.convs_per_stage << " fc " << list(m.hidden);
  else if (m.name == "mlp")
    s << " " << list(m.hidden);
  else if (m.name == "vit")
    s << " d" << m.dim << " L" << m.depth << " h" << m.heads << " p" << m.patch;
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
  int64_t step = 0, parameters = 0, batch = 0, threads = 0, test_samples = 0;
  double weights_mb = 0, accuracy = 0, test_loss = 0;
  double batch_ms = 0, batch_ms_min = 0, sample_ms = 0;
  std::optional<double> peak_forward_mb;
  std::string distill_teacher;  // canonical run dir of the teacher, distilled runs only
  std::string model_yaml;       // to recognize the baseline of a distilled student
  std::string run_canonical;
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
  // Memory the runs before this one freed but the process still holds (retort's allocator
  // cache, glibc's heap) would serve this run's activations without growing the resident
  // set: give it back first, so each run's peak is its own whatever the order.
  trainer::CachingCpuAllocator::instance().empty_cache();
  malloc_trim(0);
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

std::string markdown(const std::vector<Row>& rows) {
  const Row* teacher = nullptr;
  for (const auto& r : rows)
    if (r.role == "teacher") teacher = &r;
  std::ostringstream s;
  s << "| run | role | model | parameters | weights MB | test accuracy | latency ms / batch | latency ms / sample "
       "| peak forward MB | threads | amp |"
    << (teacher ? " size vs teacher | speed vs teacher |" : "") << "\n";
  s << "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|" << (teacher ? "---:|---:|" : "") << "\n";
  for (const auto& r : rows) {
    s << "| " << r.run << " (step " << r.step << ") | " << (r.role.empty() ? "-" : r.role) << " | " << r.model
      << " | " << r.parameters << " | " << fixed(r.weights_mb, 2) << " | " << fixed(100 * r.accuracy, 2) << " % | "
      << fixed(r.batch_ms, 2) << " (batch " << r.batch << ") | " << fixed(r.sample_ms, 4) << " | "
      << (r.peak_forward_mb ? fixed(*r.peak_forward_mb, 1) : std::string("n/a")) << " | " << r.threads << " | "
      << r.amp << " |";
    if (teacher)
      s << " " << fixed(static_cast<double>(r.parameters) / static_cast<double>(teacher->parameters), 3) << "x | "
        << fixed(teacher->sample_ms / std::max(r.sample_ms, 1e-12), 2) << "x |";
    s << "\n";
  }
  s << "\nLatency: median of the timed forwards (eval mode, no gradients) on one test batch, every run with the "
       "same threads and batch; speed vs teacher: the teacher's latency per sample over the run's; "
       "peak forward: growth of the peak resident set over the resident weights during those forwards.\n";
  return s.str();
}

nlohmann::json to_json(const std::vector<Row>& rows, const ReportArgs& a) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json j = {{"run", r.run},
                        {"checkpoint", r.checkpoint},
                        {"step", r.step},
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
    j["peak_forward_mb"] = r.peak_forward_mb ? nlohmann::json(*r.peak_forward_mb) : nlohmann::json(nullptr);
    runs.push_back(j);
  }
  return {{"retort", RETORT_VERSION},
          {"warmup", a.warmup},
          {"repeats", a.repeats},
          {"threads", a.threads},
          {"batch", a.batch},
          {"memory", "weights_mb: parameters + buffers; peak_forward_mb: VmHWM growth over VmRSS during the forwards"},
          {"runs", runs}};
}

}  // namespace

int report(launch::World& world, const std::vector<std::string>& args) {
  const ReportArgs a = parse_report_args(args);
  if (world.size() > 1) throw UsageError("report: measures in one process; run it without mpirun");
  ensure_writable_dir(a.out);
  const torch::Device device = world.pick_device();
  launch::LocalCommunicator comm;
  std::map<std::string, std::shared_ptr<data::Dataset>> test_sets;  // by name|root|subset

  std::vector<Row> rows;
  for (const auto& run : a.runs) {
    Row r;
    r.run = run;
    const auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(run));
    RunConfig rc = config_of(ckpt, a.overrides);
    rc.data.validate();
    r.checkpoint = ckpt.dir.string();
    r.step = ckpt.step;
    r.model = describe_model(rc.model);
    r.run_canonical = canonical_path(ckpt.dir.parent_path().parent_path());  // <run>/checkpoints/step-N
    const YAML::Node& tree = rc.tree;  // const: operator[] must not insert keys
    r.model_yaml = config::emit(tree["model"]);
    r.amp = rc.amp.mode == amp::AmpMode::kOff
                ? "off"
                : config::enum_name(rc.amp.mode) + " " + config::enum_name(rc.amp.dtype);
    const YAML::Node teacher = tree["distill"] ? tree["distill"]["teacher"] : YAML::Node();
    if (teacher && teacher["checkpoint"] && !teacher["checkpoint"].as<std::string>().empty()) {
      r.role = "distilled";
      try {
        const auto dir = trainer::Checkpointer::resolve(teacher["checkpoint"].as<std::string>());
        r.distill_teacher = canonical_path(dir.parent_path().parent_path());
      } catch (const Error&) {
        // The teacher moved or was deleted: the run is still reported, unmatched.
      }
    } else if (teacher && teacher["weights"] && !teacher["weights"].as<std::string>().empty()) {
      r.role = "distilled";
    }

    auto model = models::make_model(rc.model);
    models::load_weights(*model, ckpt.model, (ckpt.dir / "model.safetensors").string());
    model->to(device);
    r.parameters = models::count_parameters(*model);
    int64_t bytes = 0;
    for (const auto& kv : models::named_state(*model)) bytes += kv.second.numel() * kv.second.element_size();
    r.weights_mb = static_cast<double>(bytes) / (1024.0 * 1024.0);
    r.threads = trainer::set_threads(a.threads);

    const std::string key = rc.data.name + "|" + rc.data.root + "|" + std::to_string(rc.data.subset);
    auto& test_set = test_sets[key];
    if (!test_set) test_set = std::make_shared<data::Dataset>(data::load_dataset(rc.data, "test"));
    const auto eval = trainer::evaluate(*model, *test_set, rc.data, device, comm, rc.amp);
    r.accuracy = eval.accuracy;
    r.test_loss = eval.loss;
    r.test_samples = eval.samples;

    r.batch = std::min<int64_t>(a.batch, test_set->size());
    const auto stats = data::make_loader_options(rc.data, device, 0);
    auto x = data::normalize(test_set->images.slice(0, 0, r.batch), stats.mean, stats.stddev).to(device);
    const Timing t = time_forward(*model, x, rc.amp, a.warmup, a.repeats);
    r.batch_ms = t.median_ms;
    r.batch_ms_min = t.min_ms;
    r.sample_ms = t.median_ms / static_cast<double>(std::max<int64_t>(1, r.batch));
    r.peak_forward_mb = t.peak_mb;
    rows.push_back(std::move(r));
  }

  // Roles: the teacher a distilled run names, and the baseline trained alone with the
  // distilled student's architecture.
  for (auto& r : rows) {
    if (!r.role.empty()) continue;
    for (const auto& d : rows) {
      if (d.role != "distilled") continue;
      if (!d.distill_teacher.empty() && d.distill_teacher == r.run_canonical) r.role = "teacher";
      else if (d.model_yaml == r.model_yaml && r.role.empty()) r.role = "baseline";
    }
  }

  const std::string table = markdown(rows);
  std::cout << table;
  write_file_atomic(a.out / "report.md", "# retort report\n\n" + table);
  write_file_atomic(a.out / "report.json", to_json(rows, a).dump(1) + "\n");
  std::cout << "wrote " << (a.out / "report.md").string() << " and " << (a.out / "report.json").string() << "\n";
  return kExitOk;
}

}  // namespace retort::cli
