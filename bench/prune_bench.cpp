// What pruning buys: for each run (dense first), test accuracy, parameters (all and
// nonzero), checkpoint size and CPU forward latency at the same threads and batch.
//   prune_bench [--threads 1] [--batch 256] [--repeats 30] [--no-accuracy] [--json out.json]
//               dense=<run> structured40=<run> ...
// Prints a Markdown table; latency and size are also given relative to the first run.
// Dense kernels multiply zeros like any other number: an unstructured-pruned model runs
// as fast as the dense one; only compaction (fewer channels) makes it faster.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/run_config.h"
#include "core/error.h"
#include "data/data.h"
#include "launch/communicator.h"
#include "models/models.h"
#include "trainer/checkpoint_model.h"
#include "trainer/trainer.h"

namespace fs = std::filesystem;
using namespace retort;

namespace {

struct Row {
  std::string label, dir, model;
  int64_t params = 0, nonzero = 0;
  double file_mb = 0, accuracy = -1, median_ms = 0, min_ms = 0;
};

std::string percent(double fraction) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(2) << 100 * fraction << " %";
  return os.str();
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Loaded {
  Row row;
  std::shared_ptr<models::Model> model;
  cli::RunConfig rc;
};

Loaded load(const std::string& label, const std::string& where) {
  Loaded l;
  Row& r = l.row;
  r.label = label;
  auto loaded = trainer::load_checkpoint_model(where);
  const auto& ckpt = loaded.checkpoint;
  r.dir = ckpt.dir.string();
  l.rc = cli::read_run_config(YAML::Load(ckpt.config_yaml));
  l.model = loaded.model;
  r.model = l.rc.model.name;
  for (const auto& p : l.model->parameters()) {
    r.params += p.numel();
    r.nonzero += p.ne(0).sum().item<int64_t>();
  }
  r.file_mb = static_cast<double>(fs::file_size(ckpt.dir / "model.safetensors")) / 1e6;
  return l;
}

/// Median and minimum forward time of every model, timed in turns (one forward of each
/// per round) so that a busy moment of the machine hits all models alike.
void time_forward(std::vector<Loaded>& runs, int64_t batch, int64_t repeats) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const auto& o = runs.front().rc.model;
  auto x = torch::randn({batch, o.in_channels, o.image_size, o.image_size});
  for (auto& l : runs)
    for (int i = 0; i < 3; ++i) l.model->forward(x);
  std::vector<std::vector<double>> ms(runs.size());
  for (int64_t i = 0; i < repeats; ++i)
    for (size_t k = 0; k < runs.size(); ++k) {
      const double t0 = now_ms();
      auto out = runs[k].model->forward(x);
      (void)out.logits.sum().item<float>();
      ms[k].push_back(now_ms() - t0);
    }
  for (size_t k = 0; k < runs.size(); ++k) {
    std::sort(ms[k].begin(), ms[k].end());
    runs[k].row.median_ms = ms[k][ms[k].size() / 2];
    runs[k].row.min_ms = ms[k].front();
  }
}

}  // namespace

int main(int argc, char** argv) {
  int64_t threads = 1, batch = 256, repeats = 30;
  bool accuracy = true;
  std::string json_out;
  std::vector<std::pair<std::string, std::string>> runs;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw UsageError(a + " expects a value");
        return argv[++i];
      };
      if (a == "--threads") threads = std::stoll(value());
      else if (a == "--batch") batch = std::stoll(value());
      else if (a == "--repeats") repeats = std::stoll(value());
      else if (a == "--json") json_out = value();
      else if (a == "--no-accuracy") accuracy = false;
      else if (a.find('=') != std::string::npos) runs.emplace_back(a.substr(0, a.find('=')), a.substr(a.find('=') + 1));
      else throw UsageError("unknown argument '" + a + "' (runs are given as label=<run dir or checkpoint>)");
    }
    if (runs.empty()) throw UsageError("usage: prune_bench [--threads N] [--batch B] [--repeats R] label=<run> ...");
    const int used = trainer::set_threads(threads);
    std::vector<Loaded> loaded;
    for (const auto& [label, dir] : runs) {
      std::cerr << "loading " << label << " (" << dir << ")\n";
      loaded.push_back(load(label, dir));
    }
    time_forward(loaded, batch, repeats);
    std::vector<Row> rows;
    for (auto& l : loaded) {
      if (accuracy) {
        std::cerr << "evaluating " << l.row.label << "\n";
        launch::LocalCommunicator local;
        auto test = data::load_dataset(l.rc.data, "test");
        l.row.accuracy =
            trainer::evaluate(*l.model, test, l.rc.data, torch::kCPU, local, l.rc.amp).accuracy;
      }
      rows.push_back(l.row);
    }
    const Row& base = rows.front();
    std::cout << "CPU forward, batch " << batch << ", " << used << " thread(s), median of " << repeats << "\n\n"
              << "| run | test accuracy | params | nonzero | model.safetensors | latency ms | vs " << base.label
              << " |\n|---|---:|---:|---:|---:|---:|---:|\n";
    nlohmann::json j = {{"batch", batch}, {"threads", used}, {"repeats", repeats}, {"runs", nlohmann::json::array()}};
    for (const auto& r : rows) {
      std::cout << std::fixed << "| " << r.label << " | "
                << (r.accuracy >= 0 ? percent(r.accuracy) : std::string("-"))
                << " | " << r.params << " | " << r.nonzero << " | " << std::setprecision(2) << r.file_mb << " MB | "
                << std::setprecision(2) << r.median_ms << " | " << std::setprecision(2) << r.median_ms / base.median_ms
                << "x |\n";
      j["runs"].push_back({{"label", r.label},         {"dir", r.dir},          {"params", r.params},
                           {"nonzero", r.nonzero},     {"file_mb", r.file_mb},  {"accuracy", r.accuracy},
                           {"median_ms", r.median_ms}, {"min_ms", r.min_ms},
                           {"latency_ratio", r.median_ms / base.median_ms}});
    }
    if (!json_out.empty()) std::ofstream(json_out) << j.dump(2) << "\n";
  } catch (const Error& e) {
    std::cerr << "prune_bench: error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "prune_bench: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
