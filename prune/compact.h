#pragma once
/// Compaction: a structured-pruned model becomes a physically smaller dense model, with
/// the removed channels / neurons gone from every tensor that touches them. Its outputs
/// equal the masked model's (only exact zeros were dropped; summation order may differ).
///   prune::Compacted c = prune::compact(*model, masks);
///   c.model->forward(x);        // same logits as the masked model
///   c.options.conv_channels;   // per-convolution widths, for the checkpoint's config
#include <map>
#include <memory>
#include <string>

#include "models/model.h"
#include "prune/masks.h"

namespace retort::prune {

struct Compacted {
  std::shared_ptr<models::Model> model;
  models::ModelOptions options;
  /// What the masks still prune inside the kept channels (unstructured leftovers), in the
  /// compacted model's shapes; empty when the pruning was purely structured.
  Masks masks;
  int64_t params_before = 0;
  int64_t params_after = 0;
};

/// Per structured layer, [out] bool: false where the masks make that output channel /
/// neuron exactly zero after its activation (batch norm weight and bias pruned, or the
/// weight row and bias pruned), so that removing it changes nothing downstream. Layers
/// whose outputs are all kept are absent. Empty for models without a known layer graph.
std::map<std::string, torch::Tensor> removable_channels(const models::Model& model, const Masks& masks);

/// The compacted model (cnn, mlp). ConfigError when the architecture has no known layer
/// graph or when no channel is removable ("nothing to compact": unstructured zeros do not
/// shrink dense layers).
Compacted compact(const models::Model& model, const Masks& masks);

}  // namespace retort::prune
