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

#include "models/gpt.h"
#include "models/model.h"
#include "prune/gpt_prune.h"
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

/// The gpt that keeps only what `keep` selects (prune/gpt_prune.h): the channels in wte, wpe,
/// every LayerNorm and every projection, the layers, and per layer the heads (their q, k, v
/// columns of c_attn and rows of attn.c_proj; each head keeps its width, so the options get
/// head_dim when heads * head_dim is no longer dim) and the MLP neurons (columns of c_fc, rows
/// of mlp.c_proj). With every channel kept, its logits equal those of `gpt` with the removed
/// heads' and neurons' c_proj rows zeroed and the removed layers skipped. No masks.
Compacted compact_gpt(const models::Gpt& gpt, const GptSelection& keep);

}  // namespace retort::prune
