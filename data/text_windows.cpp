#include "data/text_windows.h"

#include "core/error.h"
#include "data/sampler.h"

namespace retort::data {

TextWindows::TextWindows(std::shared_ptr<const TokenFile> tokens, int64_t context, WindowSampling sampling,
                         uint64_t seed, int64_t max_windows)
    : tokens_(std::move(tokens)), context_(context), sampling_(sampling), seed_(seed) {
  if (context_ < 1) throw ConfigError("model.context must be >= 1, got " + std::to_string(context_));
  if (tokens_->size() < context_ + 1)
    throw DataError(tokens_->path().string() + ": " + std::to_string(tokens_->size()) +
                    " tokens, fewer than one window of model.context + 1 = " + std::to_string(context_ + 1));
  blocks_ = (tokens_->size() - 1) / context_;
  if (max_windows > 0) blocks_ = std::min(blocks_, max_windows);
}

int64_t TextWindows::start(int64_t epoch, int64_t index) const {
  if (sampling_ == WindowSampling::kBlocks) return index * context_;
  // A domain constant keeps this stream apart from the sampler's and augmentation's.
  constexpr uint64_t kWindowDomain = 0x77696e646f777321ULL;
  SplitMix64 rng(mix64(mix64(seed_ ^ kWindowDomain) ^ static_cast<uint64_t>(epoch)) ^
                 mix64(static_cast<uint64_t>(index)));
  return static_cast<int64_t>(rng.below(static_cast<uint64_t>(tokens_->size() - context_)));
}

std::pair<torch::Tensor, torch::Tensor> TextWindows::batch(const std::vector<int64_t>& indices,
                                                           int64_t epoch) const {
  const auto b = static_cast<int64_t>(indices.size());
  auto windows = torch::empty({b, context_ + 1}, torch::kInt64);
  for (int64_t i = 0; i < b; ++i) {
    if (indices[i] < 0 || indices[i] >= blocks_)
      throw DataError(tokens_->path().string() + ": sample " + std::to_string(indices[i]) + " outside [0, " +
                      std::to_string(blocks_) + ")");
    windows[i].copy_(tokens_->slice(start(epoch, indices[i]), context_ + 1));
  }
  return {windows.narrow(1, 0, context_).contiguous(), windows.narrow(1, 1, context_).contiguous()};
}

}  // namespace retort::data
