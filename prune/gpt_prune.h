#pragma once
/// Structured pruning of a gpt language model into a smaller dense gpt, as Minitron does
/// (arXiv 2407.14679): activations on calibration windows rank the embedding channels, the
/// heads and MLP neurons of every layer, and the layers (ShortGPT's block influence); the top
/// ones of each are kept, the same number of heads and neurons in every kept layer, so the
/// result is one `model:` section (dim, depth, heads, mlp_dim, head_dim).
///   prune::check_gpt_targets(*gpt, options.gpt);                  // before the calibration
///   auto importance = prune::gpt_importance(*gpt, batches);        // batches: [b, T] token ids
///   auto keep = prune::select_gpt(*gpt, importance, options.gpt);
///   prune::Compacted small = prune::compact_gpt(*gpt, keep);       // prune/compact.h
#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/gpt.h"
#include "prune/options.h"

namespace retort::prune {

/// Each score is a mean over the calibration tokens (float64, CPU); higher is more important.
struct GptImportance {
  torch::Tensor channels;  ///< [dim]: mean |output| of the channel, summed over ln_1, ln_2 of every layer and ln_f
  torch::Tensor heads;     ///< [depth, heads]: mean L2 norm (over head_dim) of the head's attention output
  torch::Tensor neurons;   ///< [depth, mlp]: mean |GELU output| of the MLP neuron
  torch::Tensor layers;    ///< [depth]: block influence, 1 - mean cosine(layer input, layer output)
  int64_t tokens = 0;      ///< calibration tokens measured
};

/// The scores of `gpt` (in eval mode, without gradients; its mode is restored) over every
/// batch. DataError when `batches` is empty.
GptImportance gpt_importance(models::Gpt& gpt, const std::vector<torch::Tensor>& batches);

/// What a compacted gpt keeps of the model, every index list ascending.
struct GptSelection {
  torch::Tensor channels;              ///< [dim'] int64 embedding channels
  std::vector<int64_t> layers;         ///< layers, in depth order
  std::vector<torch::Tensor> heads;    ///< per kept layer, [heads'] int64 (the same count in each)
  std::vector<torch::Tensor> neurons;  ///< per kept layer, [mlp'] int64 (the same count in each)
};

/// Everything of `gpt`: compacting it gives the same model.
GptSelection select_all(const models::Gpt& gpt);

/// ConfigError naming prune.gpt.<key>, the value and the model's size when a target is
/// negative or larger than the model (0 keeps the model's size).
void check_gpt_targets(const models::Gpt& gpt, const GptPruneOptions& targets);

/// The highest-ranked channels, layers, heads and neurons, as many as `targets` asks (ties:
/// the lower index goes first, as prune/methods.h decides). Checks the targets first.
GptSelection select_gpt(const models::Gpt& gpt, const GptImportance& importance, const GptPruneOptions& targets);

/// A Markdown table per layer (block influence, kept, heads kept, neurons kept) and the
/// channels kept, for `retort prune`'s summary.
std::string format_gpt_selection(const GptImportance& importance, const GptSelection& keep);

}  // namespace retort::prune
