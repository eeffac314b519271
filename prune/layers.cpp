#include "prune/layers.h"

#include <set>

#include "core/error.h"
#include "core/text.h"
#include "models/cnn.h"

namespace retort::prune {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

bool supports_structured(const models::Model& model) {
  return dynamic_cast<const models::Cnn*>(&model) != nullptr || dynamic_cast<const models::Mlp*>(&model) != nullptr;
}

std::vector<Layer> prunable_layers(const models::Model& model) {
  std::vector<Layer> layers;
  std::set<std::string> params, buffers;
  for (const auto& kv : model.named_parameters()) {
    params.insert(kv.key());
    const auto& w = kv.value();
    if (!ends_with(kv.key(), ".weight") || w.dim() < 2) continue;
    Layer l;
    l.name = kv.key().substr(0, kv.key().size() - 7);
    l.kind = w.dim() == 4 ? "conv" : "linear";
    l.weight = kv.key();
    l.out = w.size(0);
    l.in = w.size(1);
    l.shape = w.sizes().vec();
    layers.push_back(std::move(l));
  }
  for (const auto& kv : model.named_buffers()) buffers.insert(kv.key());
  if (!supports_structured(model)) return layers;

  // cnn / mlp: a chain, each layer feeding the next (models/cnn.h), with the batch norm
  // of stageS.convJ named stageS.bnJ.
  for (size_t i = 0; i < layers.size(); ++i) {
    Layer& l = layers[i];
    l.structured = true;
    if (params.count(l.name + ".bias")) l.out_params.push_back(l.name + ".bias");
    const auto pos = l.name.rfind(".conv");
    if (l.kind == "conv" && pos != std::string::npos) {
      const std::string bn = l.name.substr(0, pos) + ".bn" + l.name.substr(pos + 5);
      if (params.count(bn + ".weight")) l.out_params.push_back(bn + ".weight");
      if (params.count(bn + ".bias")) l.out_params.push_back(bn + ".bias");
      for (const char* b : {".running_mean", ".running_var"})
        if (buffers.count(bn + b)) l.out_buffers.push_back(bn + b);
    }
    if (i + 1 < layers.size()) {
      const Layer& next = layers[i + 1];
      if (next.in % l.out != 0)
        throw Error("prune: unexpected layer graph: " + next.name + " reads " + std::to_string(next.in) +
                    " inputs, not a multiple of " + l.name + "'s " + std::to_string(l.out) + " outputs");
      l.consumer = next.name;
      l.consumer_group = next.in / l.out;  // 1, or H * W where a flatten follows the last stage
    }
  }
  return layers;
}

std::string layer_list(const std::vector<Layer>& layers) {
  return join(layers, [](const Layer& l) { return l.name; });
}

}  // namespace retort::prune
