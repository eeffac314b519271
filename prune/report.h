#pragma once
/// Per-layer sparsity, as the prune command prints it.
///   auto rows = prune::sparsity_report(*model, masks);
///   std::cout << prune::format_report(rows, *model, masks);
#include <string>
#include <vector>

#include "models/model.h"
#include "prune/masks.h"

namespace retort::prune {

struct LayerSparsity {
  std::string layer;
  std::string kind;              ///< conv | linear
  std::vector<int64_t> shape;    ///< of the weight
  int64_t weights = 0;           ///< entries of the weight
  int64_t pruned = 0;            ///< of them masked
  int64_t channels = 0;          ///< output channels / neurons
  int64_t channels_removed = 0;  ///< whose whole weight row is masked
  double sparsity() const { return weights ? static_cast<double>(pruned) / static_cast<double>(weights) : 0.0; }
};

std::vector<LayerSparsity> sparsity_report(const models::Model& model, const Masks& masks);

/// A Markdown table (layer, shape, weights, pruned, sparsity, channels kept) and a total
/// line over all parameters of the model (biases and norms included).
std::string format_report(const std::vector<LayerSparsity>& rows, const models::Model& model, const Masks& masks);

}  // namespace retort::prune
