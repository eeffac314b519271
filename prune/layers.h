#pragma once
/// The prunable layers of a model and, for the CNN and MLP families, how their outputs
/// feed the next layer (what structured pruning and compaction must follow).
///   auto layers = prune::prunable_layers(*model);   // stage0.conv0, ..., fc0, head
///   layers[0].consumer;        // "stage0.conv1": its input channels are our outputs
///   layers[1].consumer_group;  // across a flatten: fc0 columns per channel (H * W)
#include <string>
#include <vector>

#include "models/model.h"

namespace retort::prune {

struct Layer {
  std::string name;     ///< module name: "stage0.conv0", "fc1", "head"
  std::string kind;     ///< "conv" or "linear"
  std::string weight;   ///< "<name>.weight": [out, in] or [out, in, kh, kw]
  int64_t out = 0;      ///< output channels / neurons (weight dim 0)
  int64_t in = 0;       ///< input channels / features (weight dim 1)
  std::vector<int64_t> shape;  ///< the weight's shape
  // Structured dependencies; filled only when `structured` is true.
  bool structured = false;
  std::vector<std::string> out_params;   ///< 1-D parameters indexed by our outputs: bias, batch-norm weight and bias
  std::vector<std::string> out_buffers;  ///< batch-norm running statistics indexed by our outputs
  std::string consumer;                  ///< the next layer ("" for the last: its outputs are the logits)
  int64_t consumer_group = 1;            ///< consumer input columns per output channel (H * W across a flatten)
};

/// Every module with a weight of 2 or more dims, in parameter order. For models with a
/// known chain of layers (cnn, mlp) the structured fields are filled.
std::vector<Layer> prunable_layers(const models::Model& model);

/// Whether structured pruning knows the layer graph of this architecture (cnn, mlp).
bool supports_structured(const models::Model& model);

/// The names, for messages ("stage0.conv0, stage0.conv1, fc0, head").
std::string layer_list(const std::vector<Layer>& layers);

}  // namespace retort::prune
