#include "prune/methods.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "config/config.h"
#include "core/error.h"
#include "core/text.h"

namespace retort::prune {
namespace {

/// The layer's weight as its masks leave it (CPU, float64 for the scores).
torch::Tensor effective_weight(const models::Model& model, const Layer& layer, const Masks& existing) {
  auto w = model.named_parameters()[layer.weight].detach().to(torch::kCPU, torch::kFloat64);
  if (existing.contains(layer.weight)) w = w * existing.at(layer.weight).to(torch::kFloat64);
  return w;
}

const Layer& find_layer(const std::vector<Layer>& layers, const std::string& name, const std::string& key) {
  for (const auto& l : layers)
    if (l.name == name) return l;
  std::vector<std::string> names;
  for (const auto& l : layers) names.push_back(l.name);
  const std::string near = config::suggest(name, names);
  throw ConfigError(key + ": unknown layer '" + name + "'" + (near.empty() ? "" : " (did you mean '" + near + "'?)") +
                    "; prunable layers: " + layer_list(layers));
}

}  // namespace

torch::Tensor smallest_indices(const torch::Tensor& scores, int64_t k) {
  auto order = std::get<1>(torch::sort(scores, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  return order.narrow(0, 0, k);
}

int64_t prune_count(double sparsity, int64_t n) {
  if (n <= 0) return 0;
  // The epsilon keeps 0.29 * 100 = 28.999999999999996 from losing a weight.
  const auto k = static_cast<int64_t>(std::floor(sparsity * static_cast<double>(n) + 1e-9));
  return std::clamp<int64_t>(k, 0, n - 1);
}

torch::Tensor magnitude_mask(const torch::Tensor& weight, double sparsity) {
  auto scores = weight.detach().to(torch::kCPU, torch::kFloat64).abs().flatten();
  auto keep = torch::ones({scores.numel()}, torch::kBool);
  const int64_t k = prune_count(sparsity, scores.numel());
  if (k > 0) keep.index_fill_(0, smallest_indices(scores, k), false);
  return keep.view(weight.sizes());
}

std::vector<torch::Tensor> global_magnitude_masks(const std::vector<torch::Tensor>& weights, double sparsity) {
  std::vector<torch::Tensor> flat;
  for (const auto& w : weights) flat.push_back(w.detach().to(torch::kCPU, torch::kFloat64).abs().flatten());
  std::vector<torch::Tensor> out;
  if (flat.empty()) return out;
  auto scores = torch::cat(flat);
  auto keep = torch::ones({scores.numel()}, torch::kBool);
  const int64_t k = prune_count(sparsity, scores.numel());
  if (k > 0) keep.index_fill_(0, smallest_indices(scores, k), false);
  int64_t offset = 0;
  for (const auto& w : weights) {
    out.push_back(keep.narrow(0, offset, w.numel()).view(w.sizes()).clone());
    offset += w.numel();
  }
  return out;
}

torch::Tensor channel_keep(const torch::Tensor& weight, double sparsity, int p, int64_t round_to) {
  if (p != 1 && p != 2) throw Error("channel_keep: norm must be 1 or 2, got " + std::to_string(p));
  auto w = weight.detach().to(torch::kCPU, torch::kFloat64).flatten(1);  // [out, in * kh * kw]
  auto norms = p == 1 ? w.abs().sum(1) : w.pow(2).sum(1).sqrt();        // [out]
  auto keep = torch::ones({w.size(0)}, torch::kBool);
  int64_t k = prune_count(sparsity, w.size(0));
  const int64_t kept = w.size(0) - k;
  if (round_to > 1 && kept > round_to) k = w.size(0) - kept / round_to * round_to;  // kept: a multiple
  if (k > 0) keep.index_fill_(0, smallest_indices(norms, k), false);
  return keep;
}

torch::Tensor semi_structured_mask(const torch::Tensor& weight) {
  if (weight.dim() != 2 && weight.dim() != 4)
    throw Error("2:4: expected a linear [out, in] or conv [out, in, kh, kw] weight, got " +
                std::to_string(weight.dim()) + " dims");
  const int64_t in = weight.size(1);
  if (in % 4 != 0) throw Error("2:4: the input dim (" + std::to_string(in) + ") is not a multiple of 4");
  auto a = weight.detach().to(torch::kCPU, torch::kFloat64).abs();
  // Put the input dim last, then split it into groups of 4.
  auto grouped = weight.dim() == 2 ? a.reshape({a.size(0), in / 4, 4})
                                   : a.permute({0, 2, 3, 1}).reshape({a.size(0), a.size(2), a.size(3), in / 4, 4});
  auto order = std::get<1>(torch::sort(grouped, /*stable=*/true, /*dim=*/-1, /*descending=*/false));
  auto keep = torch::ones_like(grouped, torch::kBool);
  keep.scatter_(-1, order.narrow(-1, 0, 2), false);
  if (weight.dim() == 2) return keep.reshape(weight.sizes());
  return keep.reshape({a.size(0), a.size(2), a.size(3), in}).permute({0, 3, 1, 2}).contiguous();
}

Masks channel_masks(const std::vector<Layer>& layers, size_t index, const torch::Tensor& keep) {
  const Layer& l = layers.at(index);
  if (!l.structured) throw Error("channel_masks: the layer graph of '" + l.name + "' is unknown");
  if (keep.dim() != 1 || keep.size(0) != l.out)
    throw Error("channel_masks: '" + l.name + "' has " + std::to_string(l.out) + " outputs, keep has " +
                std::to_string(keep.numel()));
  auto k = keep.to(torch::kCPU).ne(0);
  Masks m;
  // [out] -> [out, 1 (, 1, 1)] broadcast over the weight; columns likewise on dim 1.
  auto along = [](const torch::Tensor& v, int64_t dim, const std::vector<int64_t>& shape) {
    std::vector<int64_t> view(shape.size(), 1);
    view[static_cast<size_t>(dim)] = v.size(0);
    return v.view(view).expand(shape);
  };
  m.set(l.weight, along(k, 0, l.shape));
  for (const auto& p : l.out_params) m.set(p, k);
  if (!l.consumer.empty()) {
    const Layer& next = find_layer(layers, l.consumer, "channel_masks");
    m.set(next.weight, along(k.repeat_interleave(l.consumer_group), 1, next.shape));
  }
  return m;
}

std::string unfit_reason(const Layer& layer, Method method) {
  if (is_structured(method)) {
    if (!layer.structured) return "belongs to a model whose layer graph structured pruning does not know (cnn and mlp only)";
    if (layer.consumer.empty()) return "is the output layer: its outputs are the classes and cannot be removed";
  }
  if (method == Method::kSemi24 && layer.in % 4 != 0)
    return "has " + std::to_string(layer.in) + (layer.kind == "conv" ? " input channels" : " input features") +
           ", not a multiple of 4";
  return "";
}

std::map<std::string, double> layer_plan(const std::vector<Layer>& layers, const PruneOptions& options) {
  options.validate();
  const Method method = parse_method(options.method);
  std::set<std::string> skip;
  for (const auto& name : options.skip) skip.insert(find_layer(layers, name, "prune.skip").name);
  const auto overrides = options.layer_sparsities();
  for (const auto& [name, s] : overrides) {
    find_layer(layers, name, "prune.layers");
    if (skip.count(name))
      throw ConfigError("prune.layers." + name + ": the layer is also in prune.skip; keep it in one of them");
    if (method == Method::kSemi24 && s != 0.0 && s != 0.5)
      throw ConfigError("prune.layers." + name + ": 2:4 prunes exactly half of a layer (0.5), or nothing (0); got " +
                        format_number(s));
  }
  std::map<std::string, double> plan;
  for (const auto& l : layers) {
    if (skip.count(l.name)) continue;
    auto it = overrides.find(l.name);
    double s = it != overrides.end() ? it->second : options.sparsity;
    if (method == Method::kSemi24 && it == overrides.end()) s = 0.5;  // prune.sparsity does not apply to 2:4
    if (s == 0.0) continue;
    const std::string why = unfit_reason(l, method);
    if (!why.empty()) {
      std::string skip_list;
      for (const auto& k : options.skip) skip_list += k + ",";
      throw ConfigError("prune.method=" + options.method + ": layer '" + l.name + "' " + why +
                        "; leave it dense with prune.skip=[" + skip_list + l.name + "] or choose another method");
    }
    plan[l.name] = s;
  }
  return plan;
}

Masks compute_masks(const models::Model& model, const PruneOptions& options, const Masks& existing) {
  const auto layers = prunable_layers(model);
  const auto plan = layer_plan(layers, options);
  const Method method = parse_method(options.method);
  const auto overrides = options.layer_sparsities();
  Masks masks;
  std::vector<torch::Tensor> global_weights;
  std::vector<std::string> global_names;
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    auto it = plan.find(l.name);
    if (it == plan.end()) continue;
    const double s = it->second;
    auto w = effective_weight(model, l, existing);
    switch (method) {
      case Method::kGlobalMagnitude:
        // Layers with their own sparsity are pruned alone; the rest share one threshold.
        if (!overrides.count(l.name)) {
          global_weights.push_back(w);
          global_names.push_back(l.weight);
          break;
        }
        [[fallthrough]];
      case Method::kMagnitude:
        masks.set(l.weight, magnitude_mask(w, s));
        break;
      case Method::kL1Structured:
      case Method::kL2Structured:
        masks.intersect(channel_masks(
            layers, i, channel_keep(w, s, method == Method::kL1Structured ? 1 : 2, options.round_to)));
        break;
      case Method::kSemi24:
        masks.set(l.weight, semi_structured_mask(w));
        break;
    }
  }
  if (!global_weights.empty()) {
    auto global = global_magnitude_masks(global_weights, options.sparsity);
    for (size_t i = 0; i < global.size(); ++i) masks.set(global_names[i], global[i]);
  }
  masks.intersect(existing);
  masks.drop_full();
  return masks;
}

Masks layer_masks(const models::Model& model, const std::string& layer, Method method, double sparsity,
                  const Masks& existing) {
  const auto layers = prunable_layers(model);
  const Layer& l = find_layer(layers, layer, "prune.layers");
  size_t index = 0;
  while (layers[index].name != l.name) ++index;
  const std::string why = unfit_reason(l, method);
  if (!why.empty()) throw ConfigError("prune.method=" + method_name(method) + ": layer '" + l.name + "' " + why);
  auto w = effective_weight(model, l, existing);
  Masks masks;
  switch (method) {
    case Method::kMagnitude:
    case Method::kGlobalMagnitude:  // one layer alone: the global threshold is the layer's
      masks.set(l.weight, magnitude_mask(w, sparsity));
      break;
    case Method::kL1Structured:
    case Method::kL2Structured:
      masks = channel_masks(layers, index, channel_keep(w, sparsity, method == Method::kL1Structured ? 1 : 2));
      break;
    case Method::kSemi24:
      masks.set(l.weight, semi_structured_mask(w));
      break;
  }
  masks.intersect(existing);
  masks.drop_full();
  return masks;
}

}  // namespace retort::prune
