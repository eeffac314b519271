#pragma once
// Shared by the tests/prune sources.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <initializer_list>
#include <string>

#include "core/fs.h"
#include "models/models.h"
#include "prune/prune.h"
#include "tests/common/expect.h"
#include "tests/common/temp_dir.h"

namespace retort::test {

/// A small CNN: two stages of two convs (4 then 8 channels) with batch norm, fc0 of 6.
inline models::ModelOptions small_cnn(bool batch_norm = true, const std::string& pool = "flatten") {
  models::ModelOptions o;
  o.name = "cnn";
  o.channels = {4, 8};
  o.convs_per_stage = 2;
  o.batch_norm = batch_norm;
  o.pool = pool;
  o.hidden = {6};
  return o;
}

/// Default-initialized weights, with random biases, batch-norm affine parameters and
/// statistics, so that no channel is special (and none is the identity).
inline std::shared_ptr<models::Model> random_model(const models::ModelOptions& o, uint64_t seed) {
  torch::manual_seed(seed);
  auto m = models::make_model(o);
  torch::NoGradGuard g;
  for (auto& kv : m->named_parameters()) {
    if (kv.value().dim() != 1) continue;
    if (kv.key().find(".bn") != std::string::npos && kv.key().find(".weight") != std::string::npos)
      kv.value().uniform_(0.5, 1.5);
    else
      kv.value().normal_(0, 0.1);
  }
  for (auto& kv : m->named_buffers()) {
    if (kv.key().find("running_mean") != std::string::npos) kv.value().normal_(0, 0.2);
    if (kv.key().find("running_var") != std::string::npos) kv.value().uniform_(0.5, 1.5);
  }
  return m;
}

/// The fraction of entries of `mask` that are false.
inline double sparsity_of(const torch::Tensor& mask) {
  return 1.0 - mask.to(torch::kFloat64).mean().item<double>();
}

}  // namespace retort::test
