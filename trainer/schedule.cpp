#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>

namespace retort::trainer {

LrSchedule::LrSchedule(const OptimOptions& options, int64_t total_steps)
    : options_(options), total_steps_(std::max<int64_t>(total_steps, 1)) {}

double LrSchedule::lr(int64_t step) const {
  const double base = options_.lr;
  const int64_t warmup = options_.warmup_steps;
  if (step < warmup) return base * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (options_.schedule == "cosine") {
    const double span = static_cast<double>(std::max<int64_t>(total_steps_ - warmup, 1));
    const double t = std::min(1.0, static_cast<double>(step - warmup) / span);
    return options_.min_lr + 0.5 * (base - options_.min_lr) * (1.0 + std::cos(M_PI * t));
  }
  if (options_.schedule == "step")
    return base * std::pow(options_.gamma, static_cast<double>((step - warmup) / options_.step_size));
  return base;
}

}  // namespace retort::trainer
