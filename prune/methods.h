#pragma once
/// Pruning criteria: which weights a method removes. Every choice is deterministic: equal
/// scores are broken by position (the lower index is pruned first), so every rank that
/// prunes the same weights gets the same masks.
///   prune::PruneOptions o;  o.method = "l1_structured";  o.sparsity = 0.4;
///   prune::Masks masks = prune::compute_masks(*model, o);   // validated against the model
///   masks.apply(*model);
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "models/model.h"
#include "prune/layers.h"
#include "prune/masks.h"
#include "prune/options.h"

namespace retort::prune {

/// Indices of the k smallest entries of a 1-D tensor; equal values in index order (the lower
/// index is pruned first), so the choice never depends on the sort algorithm.
torch::Tensor smallest_indices(const torch::Tensor& scores, int64_t k);

/// Entries `sparsity` prunes out of n: floor(sparsity * n), at most n - 1 (a layer keeps
/// at least one weight / channel).
int64_t prune_count(double sparsity, int64_t n);

/// Unstructured: all but the prune_count(sparsity, numel) smallest |w|.
torch::Tensor magnitude_mask(const torch::Tensor& weight, double sparsity);
/// Unstructured over several tensors at once: the prune_count(sparsity, total) smallest
/// |w| of all of them together (ties: tensor order, then position).
std::vector<torch::Tensor> global_magnitude_masks(const std::vector<torch::Tensor>& weights, double sparsity);
/// Structured: [out] bool, false for the prune_count(sparsity, out) output channels /
/// neurons whose weights have the smallest L1 (p = 1) or L2 (p = 2) norm.
torch::Tensor channel_keep(const torch::Tensor& weight, double sparsity, int p, int64_t round_to = 1);
/// 2:4: in every group of 4 consecutive weights along the input dim (linear: features;
/// conv: input channels, at each kernel position) the 2 smallest |w| are pruned. Error
/// when the input dim is not a multiple of 4.
torch::Tensor semi_structured_mask(const torch::Tensor& weight);
/// Removing the output channels of layers[index] where `keep` is false: its weight rows,
/// bias and batch-norm entries, and the consumer's input columns (consumer_group each).
Masks channel_masks(const std::vector<Layer>& layers, size_t index, const torch::Tensor& keep);

/// Why `method` cannot prune `layer`; "" when it can.
std::string unfit_reason(const Layer& layer, Method method);

/// Sparsity per layer after prune.skip and prune.layers; layers left dense are absent.
/// ConfigError for an unknown layer name (the nearest one suggested), a layer both skipped
/// and overridden, or a method that does not fit a layer (2:4 on an input dim that is not a
/// multiple of 4, structured on the output layer or on an unknown architecture).
std::map<std::string, double> layer_plan(const std::vector<Layer>& layers, const PruneOptions& options);

/// The masks `options` asks for. Weights are scored as `existing` masks leave them, and
/// the result keeps everything `existing` prunes (pruning a pruned model prunes further).
Masks compute_masks(const models::Model& model, const PruneOptions& options, const Masks& existing = {});

/// Masks of one layer alone at `sparsity` (the sensitivity scan's unit); for structured
/// methods including what follows the layer's channels.
Masks layer_masks(const models::Model& model, const std::string& layer, Method method, double sparsity,
                  const Masks& existing = {});

}  // namespace retort::prune
