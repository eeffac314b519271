#pragma once
/// Sampling a continuation from a language model (gpt) with a KV cache: the prompt is read
/// once, then each new token costs one position.
///   models::GenerateOptions g;  g.tokens = 100;  g.temperature = 0.8;  g.top_k = 40;  g.seed = 7;
///   std::vector<int64_t> next = models::generate(*model, prompt_ids, g);   // the new tokens only
#include <cstdint>
#include <vector>

#include "models/model.h"

namespace retort::models {

struct GenerateOptions {
  int64_t tokens = 64;       ///< new tokens to sample
  double temperature = 1.0;  ///< logits / temperature before sampling; 0: greedy (the likeliest token)
  int64_t top_k = 0;         ///< sample among the top_k likeliest tokens; 0: among all
  uint64_t seed = 0;         ///< seeds the sampler's own generator: the same seed, the same tokens
};

/// The options.tokens tokens that follow `prompt` (ids in [0, vocab_size)), sampled one at a
/// time from the model's next-token distribution. Runs in eval mode without gradients (the
/// model's training mode is restored), under the caller's autocast. Errors: ConfigError
/// naming model.name for a model that is not a gpt; ConfigError naming model.context when
/// the prompt, or the prompt and options.tokens together, do not fit the model's positions
/// (nothing is cropped); ConfigError for an empty prompt or a negative tokens, temperature or
/// top_k; DataError naming the position of a prompt id outside the vocabulary.
std::vector<int64_t> generate(Model& model, const std::vector<int64_t>& prompt, const GenerateOptions& options);

}  // namespace retort::models
