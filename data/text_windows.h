#pragma once
/// Token windows of a token file as the samples of an epoch, for causal language models.
///   auto file = std::make_shared<data::TokenFile>("data/fortunes/train.tokens", vocab);
///   data::TextWindows windows(file, /*context=*/256, data::WindowSampling::kRandom, seed);
///   windows.size();                                  // samples per epoch: (tokens - 1) / context
///   auto [x, y] = windows.batch({3, 17}, epoch);     // [2, 256] int64 each; y is x one token on
///
/// Sample i of an epoch is the window of context + 1 tokens starting at start(epoch, i):
/// with kBlocks the aligned block i (i * context: fixed windows, so a cached teacher's
/// outputs stay valid; the sampler shuffles their order each epoch), with kRandom an offset
/// drawn from (seed, epoch, i) alone. Either way a window is a pure function of its keys,
/// so global batches are the same on any world size and resume reproduces them.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "config/config.h"
#include "data/token_file.h"

namespace retort::data {

enum class WindowSampling { kRandom, kBlocks };

class TextWindows {
 public:
  /// At most max_windows samples (0: all). DataError naming the file when it holds fewer
  /// than context + 1 tokens; ConfigError for a context below 1.
  TextWindows(std::shared_ptr<const TokenFile> tokens, int64_t context, WindowSampling sampling, uint64_t seed,
              int64_t max_windows = 0);

  /// Samples per epoch: the aligned blocks that fit, (tokens - 1) / context.
  int64_t size() const { return blocks_; }
  int64_t context() const { return context_; }
  WindowSampling sampling() const { return sampling_; }
  const TokenFile& tokens() const { return *tokens_; }

  /// The first token of sample `index` of `epoch`.
  int64_t start(int64_t epoch, int64_t index) const;
  /// Inputs and next-token targets of these samples. [b, context] int64 each.
  std::pair<torch::Tensor, torch::Tensor> batch(const std::vector<int64_t>& indices, int64_t epoch) const;

 private:
  std::shared_ptr<const TokenFile> tokens_;
  int64_t context_;
  WindowSampling sampling_;
  uint64_t seed_;
  int64_t blocks_;
};

}  // namespace retort::data

namespace retort::config {
template <>
struct EnumNames<data::WindowSampling> {
  static std::vector<std::pair<std::string, data::WindowSampling>> list() {
    return {{"random", data::WindowSampling::kRandom}, {"blocks", data::WindowSampling::kBlocks}};
  }
};
}  // namespace retort::config
