// Times retort's training step (CNN forward, cross-entropy, backward, gradient reducer,
// scaler, AdamW step) on a batch held in memory: the same computation as
// bench/reference/train_step.py. Prints one JSON line. Driven by bench/step_bench.sh.
//   step_bench --batch 128 --threads 1 --steps 50
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "amp/amp.h"
#include "launch/communicator.h"
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
}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 128, threads = 1, steps = 50, warmup = 5, convs = 2;
  std::string channels = "32,64", hidden = "512";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch") batch = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--channels") channels = v;
    else if (k == "--convs") convs = std::stoll(v);
    else if (k == "--hidden") hidden = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  trainer::set_threads(threads);
  torch::manual_seed(0);
  models::ModelOptions mo;
  mo.channels = ints(channels);
  mo.convs_per_stage = convs;
  mo.hidden = ints(hidden);
  auto model = models::make_model(mo);
  model->train();
  trainer::SupervisedTask task(model);
  auto params = task.trainable();
  trainer::OptimOptions oo;
  oo.lr = 1e-3;
  oo.weight_decay = 1e-4;
  auto opt = trainer::make_optimizer(oo, params);
  auto comm = std::make_shared<launch::LocalCommunicator>();
  trainer::GradReducer reducer(params, comm, trainer::GradReducerOptions{});
  amp::GradScaler scaler(amp::GradScalerOptions().enabled(false), comm);
  amp::AmpOptions amp_off;
  auto x = torch::randn({batch, 1, 28, 28});
  auto y = torch::randint(0, 10, {batch}, torch::kInt64);

  auto step = [&] {
    trainer::Losses l;
    {
      amp::Autocast autocast(amp_off, torch::kCPU);
      l = task.loss(x, y);
    }
    scaler.scale(l.total).backward();
    reducer.finish();
    scaler.unscale(*opt);
    scaler.step(*opt);
    scaler.update();
    opt->zero_grad();
  };
  for (int64_t i = 0; i < warmup; ++i) step();
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << nlohmann::json{{"impl", "retort"},
                              {"batch", batch},
                              {"threads", threads},
                              {"steps", steps},
                              {"seconds", dt},
                              {"ms_per_step", 1e3 * dt / steps},
                              {"samples_per_s", batch * steps / dt}}
                   .dump()
            << "\n";
}
