// int8 kernels against fp32 on int8 runs (retort quantize): each run's forward latency with
// its int8 layers packed for each quantized-op engine this LibTorch has, and in fp32 (the
// same dequantized weights through LibTorch's fp32 ops); and the share of that fp32 forward
// spent in the layers int8 replaces, the bound on any int8 speed-up of the whole forward
// (bench/RESULTS.md "Quantization"). Models with convolutions also run fp32 with
// convolutions that hand on channels-last outputs, as the int8 ones do: the ops after them
// (batch norm, ReLU, max-pool) run at another speed on that layout, whatever the precision.
//   int8_bench [--batch 256] [--threads 1] [--repeats 20] <int8 run> [more ...]
// Inputs are random: images [batch, C, H, W], or token windows [batch, context].
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/models.h"
#include "quant/kernels.h"
#include "quant/quantize.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_model.h"
#include "trainer/trainer.h"

using namespace retort;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Runs the layer in fp32, adding its time to `*ms`.
class Timed : public amp::LayerKernel {
 public:
  explicit Timed(double* ms) : ms_(ms) {}
  torch::Tensor run(const amp::LayerCall& call) const override {
    const double start = now_ms();
    auto y = quant::fp32_layer(call);
    *ms_ += now_ms() - start;
    return y;
  }

 private:
  double* ms_;
};

/// Runs a convolution in fp32 on channels-last tensors, as the int8 kernels do.
class ChannelsLast : public amp::LayerKernel {
 public:
  torch::Tensor run(const amp::LayerCall& call) const override {
    auto c = call;
    c.x = call.x.contiguous(at::MemoryFormat::ChannelsLast);
    return quant::fp32_layer(c).contiguous(at::MemoryFormat::ChannelsLast);
  }
};

/// The median of `repeats` forwards after 3 untimed ones.
double median_forward_ms(models::Model& model, const torch::Tensor& x, int64_t repeats) {
  torch::NoGradGuard no_grad;
  for (int i = 0; i < 3; ++i) model.forward(x);
  std::vector<double> ms;
  for (int64_t i = 0; i < repeats; ++i) {
    const double start = now_ms();
    model.forward(x);
    ms.push_back(now_ms() - start);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

torch::Tensor random_input(const models::ModelOptions& o, int64_t batch) {
  if (o.language_model()) return torch::randint(o.vocab_size, {batch, o.context}, torch::kLong);
  return torch::randn({batch, o.in_channels, o.image_size, o.image_size});
}

std::string ratio(double ms, double base) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(3) << ms << " (" << std::setprecision(2) << ms / base << "x)";
  return os.str();
}

void bench_run(const std::string& run, int64_t batch, int64_t repeats) {
  const auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(run));
  if (!models::has_int8_layers(ckpt.model)) throw UsageError(run + ": not an int8 run (retort quantize makes one)");
  const auto options = trainer::checkpoint_model_options(ckpt);
  const auto x = random_input(options, batch);
  const std::string origin = (ckpt.dir / "model.safetensors").string();

  auto fp32 = models::make_model(options);
  fp32->eval();
  std::map<std::string, amp::LayerOp> ops;
  for (const auto& [weight, call] : quant::find_layers(*fp32)) ops[weight] = call.op;
  const auto split = models::split_int8_tensors(ckpt.model, ops, origin);
  models::load_weights(*fp32, split.fp32, origin);
  const double fp32_ms = median_forward_ms(*fp32, x, repeats);
  std::string channels_last = "n/a";
  {
    amp::LayerKernels convs;
    auto params = fp32->named_parameters();
    for (const auto& [weight, op] : ops)
      if (op == amp::LayerOp::kConv2d) convs.add(params[weight], std::make_shared<ChannelsLast>());
    if (convs.size() > 0) channels_last = ratio(median_forward_ms(*fp32, x, repeats), fp32_ms);
  }
  double layers_ms = 0;
  double total_ms = 0;
  {
    amp::LayerKernels timers;  // the int8 layers' fp32 time within the timed forwards
    auto params = fp32->named_parameters();
    for (const auto& l : split.layers)
      if (!l.lookup) timers.add(params[l.weight_name()], std::make_shared<Timed>(&layers_ms));
    torch::NoGradGuard no_grad;
    fp32->forward(x);
    layers_ms = 0;
    for (int64_t i = 0; i < repeats; ++i) {
      const double start = now_ms();
      fp32->forward(x);
      total_ms += now_ms() - start;
    }
  }
  std::cout << "| " << run << " | " << batch << " | " << torch::get_num_threads() << " | " << std::fixed
            << std::setprecision(3) << fp32_ms << " | " << std::setprecision(1) << 100.0 * layers_ms / total_ms
            << " % | " << channels_last << " | ";
  for (auto engine : {quant::Engine::kOneDnn, quant::Engine::kFbgemm, quant::Engine::kQnnpack}) {
    try {
      auto int8 = models::make_model(options);
      int8->eval();
      quant::load_int8(*int8, ckpt.model, origin, engine);
      std::cout << ratio(median_forward_ms(*int8, x, repeats), fp32_ms) << " | ";
    } catch (const Error&) {
      std::cout << "not in this LibTorch | ";
    }
  }
  std::cout << "\n" << std::flush;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 256, threads = 1, repeats = 20;
  std::vector<std::string> runs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] { return i + 1 < argc ? std::stoll(argv[++i]) : throw UsageError(a + ": expects a number"); };
    if (a == "--batch")
      batch = value();
    else if (a == "--threads")
      threads = value();
    else if (a == "--repeats")
      repeats = value();
    else
      runs.push_back(a);
  }
  if (runs.empty()) {
    std::cerr << "usage: int8_bench [--batch 256] [--threads 1] [--repeats 20] <int8 run> [more ...]\n";
    return 2;
  }
  trainer::set_threads(threads);
  std::cout << "| int8 run | batch | threads | fp32 ms | int8 layers' share of "
               "fp32 | fp32, channels-last convolutions ms | int8 onednn ms | int8 fbgemm ms | int8 qnnpack ms |\n"
            << "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  try {
    for (const auto& run : runs) bench_run(run, batch, repeats);
  } catch (const Error& e) {
    std::cerr << "int8_bench: " << e.what() << "\n";
    return e.exit_code();
  }
  return 0;
}
