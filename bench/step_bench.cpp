// Times retort's training step (forward, cross-entropy, backward, gradient reducer, scaler,
// AdamW step) on a batch held in memory: the CNN of bench/reference/train_step.py, or a gpt
// as bench/reference/lm_train.py --fixed-batch trains it. Prints one JSON line. Driven by
// bench/step_bench.sh (retort vs PyTorch), bench/amp_bench.sh (fp32 vs bf16 autocast vs bf16
// master) and bench/overhead_bench.sh (retort's autocast vs LibTorch's vs PyTorch's).
//   step_bench --batch 128 --threads 1 --steps 50 [--amp off|autocast|master] [--dtype bf16]
//              [--device cpu|cuda] [--model cnn|gpt] [--dim 64 --depth 2 --heads 2 --context 64 --vocab 256]
//              [--autocast retort|libtorch] [--grad-clip 1.0] [--profile [--profile-steps N] [--trace trace.json]]
// --autocast libtorch: the forward under LibTorch's dispatcher-level autocast (the policy
// torch.autocast applies) instead of retort's amp::Autocast; with --amp autocast only.
// --profile: after the timed steps, as many again (or N) under LibTorch's profiler; the JSON then
// carries ops_per_step, the ops of most self time, and per phase (forward, backward, step)
// its time and self time: the CPU time spent outside LibTorch's ops (trainer/profiler.h);
// --trace writes their Chrome trace. --grad-clip: the trainer's clipping after unscale.
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

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "amp/amp.h"
#include "launch/communicator.h"
#include "launch/cuda_compat.h"
#include "models/models.h"
#include "trainer/grad_reducer.h"
#include "trainer/optim.h"
#include "trainer/profiler.h"
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

// LibTorch's own autocast on `device` for the guard's scope, as torch.autocast sets it.
class LibTorchAutocast {
 public:
  LibTorchAutocast(torch::DeviceType device, c10::ScalarType dtype) : device_(device) {
    enable(true, dtype);
    at::autocast::increment_nesting();
  }
  ~LibTorchAutocast() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    enable(false, c10::ScalarType::BFloat16);
  }

 private:
  void enable(bool on, c10::ScalarType dtype) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(device_, on);
    if (on) at::autocast::set_autocast_dtype(device_, dtype);
#else
    if (device_ == torch::kCUDA) {
      at::autocast::set_enabled(on);
      if (on) at::autocast::set_autocast_gpu_dtype(dtype);
    } else {
      at::autocast::set_cpu_enabled(on);
      if (on) at::autocast::set_autocast_cpu_dtype(dtype);
    }
#endif
  }
  torch::DeviceType device_;
};
}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "cpu";
  int64_t batch = 128, threads = 1, steps = 50, warmup = 5, convs = 2;
  std::string channels = "32,64", hidden = "512", model_name = "cnn", autocast_impl = "retort";
  int64_t dim = 64, depth = 2, heads = 2, context = 64, vocab = 256, profile_steps = 0;
  bool profile = false;
  double grad_clip = 0;
  std::string trace;
  amp::AmpOptions amp_options;
  for (int i = 1; i < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--profile") {
      profile = true;
      --i;
      continue;
    }
    if (i + 1 == argc) {
      std::cerr << k << " needs a value\n";
      return 2;
    }
    std::string v = argv[i + 1];
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
    else if (k == "--model") model_name = v;
    else if (k == "--dim") dim = std::stoll(v);
    else if (k == "--depth") depth = std::stoll(v);
    else if (k == "--heads") heads = std::stoll(v);
    else if (k == "--context") context = std::stoll(v);
    else if (k == "--autocast") autocast_impl = v;
    else if (k == "--grad-clip") grad_clip = std::stod(v);
    else if (k == "--trace") trace = v;
    else if (k == "--vocab") vocab = std::stoll(v);
    else if (k == "--profile-steps") profile_steps = std::stoll(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  if (device_name != "cpu" && device_name != "cuda") {
    std::cerr << "--device must be cpu or cuda, got '" << device_name << "'\n";
    return 2;
  }
  if (model_name != "cnn" && model_name != "gpt") {
    std::cerr << "--model must be cnn or gpt, got '" << model_name << "'\n";
    return 2;
  }
  const bool libtorch_autocast = autocast_impl == "libtorch";
  if ((autocast_impl != "retort" && !libtorch_autocast) ||
      (libtorch_autocast && amp_options.mode != amp::AmpMode::kAutocast)) {
    std::cerr << "--autocast must be retort or libtorch (libtorch with --amp autocast only), got '" << autocast_impl
              << "'\n";
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
  if (model_name == "gpt") {
    mo.name = "gpt";
    mo.dim = dim;
    mo.depth = depth;
    mo.heads = heads;
    mo.context = context;
    mo.vocab_size = vocab;
    mo.dropout = 0;
  } else {
    mo.channels = ints(channels);
    mo.convs_per_stage = convs;
    mo.hidden = ints(hidden);
  }
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
  const bool gpt = mo.language_model();
  auto x = gpt ? torch::randint(0, mo.vocab_size, {batch, context}, torch::kInt64).to(device)
               : torch::randn({batch, 1, 28, 28}).to(device);
  auto y = gpt ? torch::randint(0, mo.vocab_size, {batch, context}, torch::kInt64).to(device)
               : torch::randint(0, 10, {batch}, torch::kInt64).to(device);
  const auto sync = [&] {
#if RETORT_HAVE_CUDA
    if (device.is_cuda()) torch::cuda::synchronize();
#endif
  };

  auto step = [&] {
    trainer::Losses l;
    if (libtorch_autocast) {
      RETORT_PHASE("forward");
      LibTorchAutocast autocast(device.type(), amp_options.dtype);
      l = task.loss(x, y);
    } else {
      RETORT_PHASE("forward");
      amp::Autocast autocast(amp_options, device.type());
      l = task.loss(x, y);
    }
    {
      RETORT_PHASE("backward");
      scaler.scale(l.total).backward();
      reducer.finish();
    }
    RETORT_PHASE("step");
    scaler.unscale(*opt);
    if (grad_clip > 0) trainer::clip_grad_norm(*opt, grad_clip);
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
  nlohmann::json ops, phases = nlohmann::json::object();
  int64_t op_calls = 0, copies = 0;
  if (profile) {
    if (profile_steps <= 0) profile_steps = steps;
    trainer::Profiler profiler(device);
    for (int64_t i = 0; i < profile_steps; ++i) step();
    const auto result = profiler.stop();
    if (!trace.empty()) result.write_chrome_trace(trace);
    for (const auto& op : result.ops()) {
      if (op.phase) phases[op.phase_name()] = {op.total_ms / profile_steps, op.self_ms / profile_steps};
      if (op.phase || op.device) continue;
      op_calls += op.calls;
      if (op.name == "aten::_to_copy") copies = op.calls;
      if (ops.size() < 15) ops.push_back({op.name, op.self_ms / profile_steps, static_cast<double>(op.calls) / profile_steps});
    }
  }
  std::cout << nlohmann::json{{"impl", libtorch_autocast ? "retort+libtorch-autocast" : "retort"},
                              {"model", model_name},
                              {"ops_per_step", profile ? static_cast<double>(op_calls) / profile_steps : -1},
                              {"casts_per_step", profile ? static_cast<double>(copies) / profile_steps : -1},
                              {"top_ops", ops},
                              {"phases", phases},
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
