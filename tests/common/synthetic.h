#pragma once
// A learnable synthetic image task shared by the trainer, distillation and pruning tests.
#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "data/data.h"

namespace retort::test {

/// `n` 28x28 images whose label is the brightest of 10 vertical bands (noise 0-59, the
/// band +180): a CNN learns it in a few dozen steps. Deterministic in `seed`.
inline std::shared_ptr<data::Dataset> band_dataset(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto d = std::make_shared<data::Dataset>();
  d->labels = torch::randint(0, 10, {n}, torch::kInt64);
  auto img = torch::randint(0, 60, {n, 1, 28, 28}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = d->labels[i].item<int64_t>();
    img.index({i, 0, torch::indexing::Slice(), torch::indexing::Slice(c * 2 + 4, c * 2 + 6)}) += 180;
  }
  d->images = img.clamp(0, 255).to(torch::kUInt8);
  return d;
}

}  // namespace retort::test
