// Times retort's training step (CNN forward, cross-entropy, backward, gradient reducer,
// scaler, AdamW step) on a batch held in memory: the same computation as
// bench/reference/train_step.py. Prints one JSON line. Driven by bench/step_bench.sh
// (retort vs PyTorch) and bench/amp_bench.sh (fp32 vs bf16 autocast vs bf16 master).
//   step_bench --batch 128 --threads 1 --steps 50 [--amp off|autocast|master] [--dtype bf16]
//              [--device cpu|cuda]
// Linked with jemalloc and retort's settings for it, as the retort program is
// (core/malloc_conf.cpp).
// Memory: max_rss_mb is the process's peak resident set (getrusage), setup_rss_mb the
// resident set before the first step (libraries, model, data), step_peak_mb the growth
// of the peak over it: what the training steps themselves took; faults_per_step the minor
// page faults of a timed step (memory the step did not get back from its allocator).
// --device cuda (a CUDA build): the model and batch on GPU 0, the clock read after a device
// synchronize, TF32 off (fp32 means fp32), and gpu_peak_mb the caching allocator's most
// bytes allocated at once during the timed steps (torch.cuda.max_memory_allocated).
#include <sys/resource.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "amp/amp.h"
#include "launch/communicator.h"
#include "launch/cuda_compat.h"
#include "models/models.h"
#include "trainer/grad_reducer.h"
#include "trainer/optim.h"
#include "trainer/task.h"
#include "trainer/trainer.h"

using namespace retort;

namespace {
std::vector<int64_t> ints(const std::string& s) {
  std::vector<int64_t> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    out.push_back(std::stoll(s.substr(i, j - i)));
    i = j == std::string::npos ? s.size() : j + 1;
  }
  return out;
}
/// A field of /proc/self/status in MiB (-1 where unavailable).
double proc_status_mb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024.0;
  return -1;
}
}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "cpu";
  int64_t batch = 128, threads = 1, steps = 50, warmup = 5, convs = 2;
  std::string channels = "32,64", hidden = "512";
  amp::AmpOptions amp_options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch") batch = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--channels") channels = v;
    else if (k == "--convs") convs = std::stoll(v);
    else if (k == "--hidden") hidden = v;
    else if (k == "--amp") amp_options.mode = config::enum_value<amp::AmpMode>(v, "--amp");
    else if (k == "--dtype") amp_options.dtype = config::enum_value<c10::ScalarType>(v, "--dtype");
    else if (k == "--device") device_name = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  if (device_name != "cpu" && device_name != "cuda") {
    std::cerr << "--device must be cpu or cuda, got '" << device_name << "'\n";
    return 2;
  }
  const torch::Device device = device_name == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
#if RETORT_HAVE_CUDA
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::cerr << "--device cuda: no CUDA device is visible\n";
    return 2;
  }
  if (device.is_cuda()) {  // fp32 means fp32: no TF32 in convolutions or matmuls
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
  }
#else
  if (device.is_cuda()) {
    std::cerr << "--device cuda: this step_bench was built without CUDA\n";
    return 2;
  }
#endif
  trainer::set_threads(threads);
  torch::manual_seed(0);
  models::ModelOptions mo;
  mo.channels = ints(channels);
  mo.convs_per_stage = convs;
  mo.hidden = ints(hidden);
  auto model = models::make_model(mo);
  model->to(device);
  model->train();
  trainer::SupervisedTask task(model);
  // The trainer's order (trainer/trainer.cpp): master weights before the optimizer.
  amp::validate(amp_options, device.type());
  std::unique_ptr<amp::MasterWeights> master;
  if (amp_options.mode == amp::AmpMode::kMaster)
    master = std::make_unique<amp::MasterWeights>(task.model(), amp_options.dtype, amp_options.keep_norm_fp32);
  auto params = task.trainable();
  auto stepped = master ? master->master_params(params) : params;
  trainer::OptimOptions oo;
  oo.lr = 1e-3;
  oo.weight_decay = 1e-4;
  auto opt = trainer::make_optimizer(oo, stepped);
  auto comm = std::make_shared<launch::LocalCommunicator>();
  trainer::GradReducer reducer(params, comm, trainer::GradReducerOptions{}, stepped);  // master: fp32 gradients
  amp::GradScaler scaler(amp::scaler_options(amp_options), comm);
  scaler.set_named_parameters(stepped);
  auto x = torch::randn({batch, 1, 28, 28}).to(device);
  auto y = torch::randint(0, 10, {batch}, torch::kInt64).to(device);
  const auto sync = [&] {
#if RETORT_HAVE_CUDA
    if (device.is_cuda()) torch::cuda::synchronize();
#endif
  };

  auto step = [&] {
    trainer::Losses l;
    {
      amp::Autocast autocast(amp_options, device.type());
      l = task.loss(x, y);
    }
    scaler.scale(l.total).backward();
    reducer.finish();
    scaler.unscale(*opt);
    const bool stepped_ok = scaler.step(*opt);
    scaler.update();
    if (master && stepped_ok) master->copy_master_to_model();
    reducer.zero_grad();
  };
  const double setup_rss = proc_status_mb("VmRSS");
  const double setup_file = proc_status_mb("RssFile");  // library pages: no precision shrinks them
  for (int64_t i = 0; i < warmup; ++i) step();
  sync();
#if RETORT_HAVE_CUDA
  if (device.is_cuda()) launch::compat::reset_peak_stats(0);
#endif
  struct rusage before {};
  ::getrusage(RUSAGE_SELF, &before);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  sync();
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  const double max_rss = static_cast<double>(usage.ru_maxrss) / 1024.0;
  double gpu_peak_mb = -1;
#if RETORT_HAVE_CUDA
  if (device.is_cuda()) gpu_peak_mb = static_cast<double>(launch::compat::peak_allocated_bytes(0)) / 1048576.0;
#endif
  std::cout << nlohmann::json{{"impl", "retort"},
                              {"amp", config::enum_name(amp_options.mode)},
                              {"dtype", amp_options.mode == amp::AmpMode::kOff ? "fp32" : config::enum_name(amp_options.dtype)},
                              {"device", device.str()},
                              {"gpu_peak_mb", gpu_peak_mb},
                              {"max_rss_mb", max_rss},
                              {"setup_rss_mb", setup_rss},
                              {"setup_rss_file_mb", setup_file},
                              {"step_peak_mb", max_rss - setup_rss},
                              {"faults_per_step", static_cast<double>(usage.ru_minflt - before.ru_minflt) / steps},
                              {"batch", batch},
                              {"threads", threads},
                              {"steps", steps},
                              {"seconds", dt},
                              {"ms_per_step", 1e3 * dt / steps},
                              {"samples_per_s", batch * steps / dt}}
                   .dump()
            << "\n";
}
