#include "trainer/options.h"

namespace retort::trainer {

void RunOptions::declare(config::Fields<RunOptions>& f) {
  f.add("dir", &RunOptions::dir, "run directory: config, logs, metrics.jsonl, checkpoints/");
}

void TrainerOptions::declare(config::Fields<TrainerOptions>& f) {
  f.add("max_epochs", &TrainerOptions::max_epochs, "epochs to train").min(1);
  f.add("max_steps", &TrainerOptions::max_steps, "stop after this many optimizer steps (0: no limit)").min(0);
  f.add("seed", &TrainerOptions::seed, "seed of initialisation, shuffling, augmentation and dropout").min(0);
  f.add("resume", &TrainerOptions::resume, "'' (fresh), 'auto' (newest checkpoint of run.dir) or a checkpoint path");
  f.add("threads", &TrainerOptions::threads, "intra-op threads per process (0: the cores available)").min(0);
  f.add("device", &TrainerOptions::device, "auto (each rank its own GPU when there are GPUs, else the CPU), cpu or cuda")
      .one_of({"auto", "cpu", "cuda"});
  f.add("log_every", &TrainerOptions::log_every, "optimizer steps between metrics lines").min(1);
  f.add("checkpoint_every", &TrainerOptions::checkpoint_every, "optimizer steps between checkpoints (0: every epoch)").min(0);
  f.add("keep_last", &TrainerOptions::keep_last, "checkpoints kept in run.dir/checkpoints").min(1);
  f.add("grad_clip", &TrainerOptions::grad_clip, "clip the global gradient L2 norm to this (0: off)").min(0);
  f.add("grad_accum", &TrainerOptions::grad_accum, "micro-batches per optimizer step").min(1);
  f.add("progress", &TrainerOptions::progress, "progress display").one_of({"auto", "plain", "off"});
  f.add("eval", &TrainerOptions::eval, "evaluate on the test split after every epoch");
  f.add("label_smoothing", &TrainerOptions::label_smoothing,
        "smooth the training cross-entropy's one-hot labels to (1 - eps) one-hot + eps / classes "
        "(the student's CE term when distilling; the test loss stays plain)")
      .min(0)
      .less_than(1);
  f.add("profile", &TrainerOptions::profile,
        "profile this many optimizer steps with LibTorch's profiler (0: off): a Chrome trace per rank in "
        "run.dir/trace-rank<r>.json, and each phase's and the slowest ops' time per step in the log")
      .min(0);
  f.add("profile_warmup", &TrainerOptions::profile_warmup, "steps of this run before the profiled ones").min(0);
}

void OptimOptions::declare(config::Fields<OptimOptions>& f) {
  f.add("name", &OptimOptions::name, "optimizer").one_of({"adamw", "sgd"});
  f.add("lr", &OptimOptions::lr, "peak learning rate").greater_than(0);
  f.add("weight_decay", &OptimOptions::weight_decay, "decoupled (adamw) or L2 (sgd) weight decay").min(0);
  f.add("beta1", &OptimOptions::beta1, "adamw first-moment decay").min(0).less_than(1);
  f.add("beta2", &OptimOptions::beta2, "adamw second-moment decay").min(0).less_than(1);
  f.add("eps", &OptimOptions::eps, "adamw denominator epsilon").greater_than(0);
  f.add("momentum", &OptimOptions::momentum, "sgd momentum").min(0).less_than(1);
  f.add("nesterov", &OptimOptions::nesterov, "sgd Nesterov momentum");
  f.add("schedule", &OptimOptions::schedule, "learning-rate schedule after warmup").one_of({"none", "cosine", "step"});
  f.add("warmup_steps", &OptimOptions::warmup_steps, "linear warmup steps").min(0);
  f.add("min_lr", &OptimOptions::min_lr, "cosine schedule floor").min(0);
  f.add("step_size", &OptimOptions::step_size, "step schedule: steps between decays").min(1);
  f.add("gamma", &OptimOptions::gamma, "step schedule: decay factor").greater_than(0).max(1);
}

}  // namespace retort::trainer
