#pragma once
// What the trainer, distillation-task and pruned-task tests build their runs from.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <utility>

#include "models/models.h"
#include "trainer/trainer.h"

namespace retort::test {

/// A CNN that learns band_dataset in a few dozen steps: stages of 4 and 8 channels, one
/// convolution each, a head of `hidden`.
inline models::ModelOptions tiny_cnn(int64_t hidden = 16) {
  models::ModelOptions o;
  o.channels = {4, 8};
  o.convs_per_stage = 1;
  o.hidden = {hidden};
  return o;
}

/// A run of `steps` steps of 32 samples into `run_dir`: no evaluation, no progress bar, the
/// default optimizer. Tests set what they look at on the result.
inline trainer::TrainerSetup quiet_setup(const std::filesystem::path& run_dir, std::shared_ptr<trainer::Task> task,
                                         std::shared_ptr<data::Dataset> train, int64_t steps, uint64_t seed) {
  trainer::TrainerSetup s;
  s.trainer.max_epochs = 100;
  s.trainer.max_steps = steps;
  s.trainer.seed = seed;
  s.trainer.progress = "off";
  s.trainer.eval = false;
  s.data.batch_size = 32;
  s.run_dir = run_dir;
  s.train_set = std::move(train);
  s.task = std::move(task);
  return s;
}

}  // namespace retort::test
