#include "prune/compact.h"

#include "core/error.h"
#include "models/weights.h"
#include "prune/layers.h"

namespace retort::prune {
namespace {

/// The mask of `name`, or an undefined tensor when nothing of it is pruned.
torch::Tensor mask_of(const Masks& masks, const std::string& name) {
  return masks.contains(name) ? masks.at(name) : torch::Tensor();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct Selection {
  torch::Tensor rows;  // indices kept along dim 0 (undefined: all)
  torch::Tensor cols;  // indices kept along dim 1 (undefined: all)
};

torch::Tensor select(torch::Tensor t, const Selection& s) {
  if (s.rows.defined()) t = t.index_select(0, s.rows);
  if (s.cols.defined()) t = t.index_select(1, s.cols);
  return t.contiguous();
}

}  // namespace

std::map<std::string, torch::Tensor> removable_channels(const models::Model& model, const Masks& masks) {
  std::map<std::string, torch::Tensor> out;
  if (!supports_structured(model)) return out;
  for (const auto& l : prunable_layers(model)) {
    if (l.consumer.empty()) continue;  // the logits stay
    std::string bn_weight, bn_bias, bias;
    for (const auto& p : l.out_params) {
      if (p == l.name + ".bias") bias = p;
      else if (ends_with(p, ".weight")) bn_weight = p;
      else bn_bias = p;
    }
    torch::Tensor zero;  // [out] true where the channel's activation is exactly 0
    if (!bn_weight.empty()) {
      // Batch norm with weight and bias 0 outputs 0 whatever comes in (train or eval mode).
      auto w = mask_of(masks, bn_weight), b = bn_bias.empty() ? torch::Tensor() : mask_of(masks, bn_bias);
      if (!w.defined() || (!bn_bias.empty() && !b.defined())) continue;
      zero = w.logical_not();
      if (b.defined()) zero = zero.logical_and(b.logical_not());
    } else {
      auto w = mask_of(masks, l.weight);
      if (!w.defined()) continue;
      zero = w.flatten(1).any(1).logical_not();
      if (!bias.empty()) {
        auto b = mask_of(masks, bias);
        if (!b.defined()) continue;
        zero = zero.logical_and(b.logical_not());
      }
    }
    auto keep = zero.logical_not();
    if (keep.all().item<bool>()) continue;
    // A layer needs one channel to exist; keeping a zero channel changes nothing.
    if (!keep.any().item<bool>()) keep[0] = true;
    out[l.name] = keep;
  }
  return out;
}

Compacted compact(const models::Model& model, const Masks& masks) {
  if (!supports_structured(model))
    throw ConfigError("compaction: model.name=" + model.options().name +
                      " has no known layer graph (cnn and mlp can be compacted)");
  masks.check(model, "compaction");
  const auto keep = removable_channels(model, masks);
  if (keep.empty())
    throw ConfigError("compaction: the masks remove no whole channel or neuron (nothing to compact); unstructured "
                      "zeros do not shrink dense layers; prune with l1_structured or l2_structured");
  const auto layers = prunable_layers(model);

  // --- which rows / columns of every tensor stay ---------------------------------------
  std::map<std::string, Selection> selections;
  Compacted c;
  c.options = model.options();
  std::vector<int64_t> conv_widths, hidden;
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    Selection own;
    auto it = keep.find(l.name);
    if (it != keep.end()) own.rows = it->second.nonzero().flatten();
    if (i > 0 && layers[i - 1].consumer == l.name) {
      auto prev = keep.find(layers[i - 1].name);
      if (prev != keep.end())
        own.cols = prev->second.repeat_interleave(layers[i - 1].consumer_group).nonzero().flatten();
    }
    selections[l.weight] = own;
    for (const auto& p : l.out_params) selections[p] = {own.rows, {}};
    for (const auto& b : l.out_buffers) selections[b] = {own.rows, {}};
    const int64_t width = own.rows.defined() ? own.rows.numel() : l.out;
    if (l.kind == "conv") conv_widths.push_back(width);
    else if (!l.consumer.empty()) hidden.push_back(width);
  }
  if (!conv_widths.empty()) c.options.conv_channels = conv_widths;
  c.options.hidden = hidden;

  // --- the smaller model, weights copied from the masked ones ---------------------------
  std::map<std::string, torch::Tensor> weights;
  for (auto& [name, t] : models::weights_of(model)) {
    auto masked = masks.contains(name) ? t.masked_fill(masks.at(name).logical_not(), 0) : t;
    auto it = selections.find(name);
    weights[name] = it == selections.end() ? masked : select(masked, it->second);
  }
  c.model = models::make_model(c.options);
  models::load_weights(*c.model, weights, "compaction of model." + model.options().name);
  c.model->train(model.is_training());
  for (const auto& [name, m] : masks.tensors()) {
    auto it = selections.find(name);
    c.masks.set(name, it == selections.end() ? m : select(m, it->second));
  }
  c.masks.drop_full();
  c.params_before = models::count_parameters(model);
  c.params_after = models::count_parameters(*c.model);
  return c;
}

}  // namespace retort::prune
