#pragma once
/// Learning-rate schedules as pure functions of the optimizer step, so that the schedule's
/// whole state is the step counter the trainer checkpoints anyway.
///   LrSchedule sched(optim_options, total_steps);  double lr = sched.lr(step);
#include <cstdint>

#include "trainer/options.h"

namespace retort::trainer {

class LrSchedule {
 public:
  LrSchedule(const OptimOptions& options, int64_t total_steps);
  /// Learning rate for optimizer step `step` (0-based): linear warmup from lr/warmup to lr
  /// over warmup_steps, then constant (none), cosine down to min_lr at total_steps, or
  /// multiplied by gamma every step_size steps.
  double lr(int64_t step) const;

 private:
  OptimOptions options_;
  int64_t total_steps_;
};

}  // namespace retort::trainer
