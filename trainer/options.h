#pragma once
/// The trainer's options, each declared once for validation and `--help`.
#include <cstdint>
#include <string>

#include "config/config.h"

namespace retort::trainer {

struct RunOptions {
  std::string dir = "outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}";
  static void declare(config::Fields<RunOptions>& f);
};

struct TrainerOptions {
  int64_t max_epochs = 10;
  int64_t max_steps = 0;        ///< 0: no limit; else stop after this many optimizer steps
  int64_t seed = 0;
  std::string resume = "";      ///< "", "auto" (newest checkpoint of run.dir) or a path
  int64_t threads = 0;          ///< 0: the cores available to this process
  std::string device = "auto";  ///< auto (a GPU per rank when there are GPUs), cpu or cuda
  int64_t log_every = 50;       ///< optimizer steps between metrics lines
  int64_t checkpoint_every = 0; ///< optimizer steps; 0: at the end of every epoch
  int64_t keep_last = 3;
  double grad_clip = 0.0;       ///< max global L2 norm; 0: off
  int64_t grad_accum = 1;       ///< micro-batches per optimizer step
  std::string progress = "auto";  ///< auto (in-place on a terminal), plain, off
  bool eval = true;             ///< evaluate on the test split after every epoch
  double label_smoothing = 0.0; ///< training cross-entropy on labels: (1 - eps) one-hot + eps / classes
  int64_t profile = 0;          ///< optimizer steps to profile (0: off), after profile_warmup steps
  int64_t profile_warmup = 5;   ///< steps of this run before the profiled ones
  static void declare(config::Fields<TrainerOptions>& f);
};

struct OptimOptions {
  std::string name = "adamw";   ///< adamw or sgd
  double lr = 1e-3;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double momentum = 0.9;        ///< sgd
  bool nesterov = false;        ///< sgd
  std::string schedule = "cosine";  ///< none, cosine (after warmup) or step
  int64_t warmup_steps = 0;
  double min_lr = 0.0;          ///< cosine floor
  int64_t step_size = 1000;     ///< step schedule: steps between decays
  double gamma = 0.1;           ///< step schedule: decay factor
  static void declare(config::Fields<OptimOptions>& f);
};

}  // namespace retort::trainer
