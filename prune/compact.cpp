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

/// Columns of a heads * head_width wide projection that belong to `heads`, head by head.
torch::Tensor head_columns(const torch::Tensor& heads, int64_t head_width) {
  return (heads.unsqueeze(1) * head_width + torch::arange(head_width, torch::kLong)).flatten();
}

/// The same number of heads and neurons in every kept layer, indices in range: one model
/// config describes the result.
void check_selection(const models::Gpt& gpt, const GptSelection& keep) {
  const auto& o = gpt.options();
  auto fail = [](const std::string& what) { throw Error("compact_gpt: " + what); };
  if (keep.channels.numel() < 1 || keep.layers.empty()) fail("nothing kept (no channel or no layer)");
  if (keep.heads.size() != keep.layers.size() || keep.neurons.size() != keep.layers.size())
    fail("heads and neurons need one index list per kept layer");
  auto in_range = [](const torch::Tensor& t, int64_t n) {
    return t.numel() > 0 && t.min().item<int64_t>() >= 0 && t.max().item<int64_t>() < n;
  };
  if (!in_range(keep.channels, o.dim)) fail("channel index outside [0, " + std::to_string(o.dim) + ")");
  for (size_t i = 0; i < keep.layers.size(); ++i) {
    if (keep.layers[i] < 0 || keep.layers[i] >= o.depth) fail("layer " + std::to_string(keep.layers[i]));
    if (!in_range(keep.heads[i], o.heads) || keep.heads[i].numel() != keep.heads[0].numel())
      fail("kept heads differ in count between layers or lie outside the model");
    if (!in_range(keep.neurons[i], gpt.mlp_width()) || keep.neurons[i].numel() != keep.neurons[0].numel())
      fail("kept neurons differ in count between layers or lie outside the model");
  }
}

/// The gpt's options after `keep`.
models::ModelOptions compacted_gpt_options(const models::Gpt& gpt, const GptSelection& keep) {
  models::ModelOptions o = gpt.options();
  o.dim = keep.channels.numel();
  o.depth = static_cast<int64_t>(keep.layers.size());
  o.heads = keep.heads.front().numel();
  o.mlp_dim = keep.neurons.front().numel();
  // 0 (dim / heads) when that is the kept width, so GPT-2's config still describes the model.
  o.head_dim = o.heads * gpt.head_width() == o.dim ? 0 : gpt.head_width();
  return o;
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

namespace retort::prune {

Compacted compact_gpt(const models::Gpt& gpt, const GptSelection& keep) {
  check_selection(gpt, keep);
  const auto params = gpt.named_parameters();
  std::map<std::string, torch::Tensor> weights;
  auto take = [&](const std::string& from, const std::string& to, const Selection& s) {
    weights[to] = select(params[from].detach(), s);
  };
  const Selection channel_rows{keep.channels, {}}, channel_cols{{}, keep.channels};
  take("transformer.wte.weight", "transformer.wte.weight", channel_cols);
  take("transformer.wpe.weight", "transformer.wpe.weight", channel_cols);
  take("transformer.ln_f.weight", "transformer.ln_f.weight", channel_rows);
  take("transformer.ln_f.bias", "transformer.ln_f.bias", channel_rows);
  const int64_t attention_width = gpt.options().heads * gpt.head_width();
  for (size_t j = 0; j < keep.layers.size(); ++j) {
    const std::string from = "transformer.h." + std::to_string(keep.layers[j]) + ".";
    const std::string to = "transformer.h." + std::to_string(j) + ".";
    auto both = [&](const std::string& name, const Selection& s) { take(from + name, to + name, s); };
    const auto heads = head_columns(keep.heads[j], gpt.head_width());
    const auto qkv = torch::cat({heads, heads + attention_width, heads + 2 * attention_width});  // c_attn: q | k | v
    const auto& neurons = keep.neurons[j];
    for (const char* norm : {"ln_1.", "ln_2."}) {
      both(std::string(norm) + "weight", channel_rows);
      both(std::string(norm) + "bias", channel_rows);
    }
    both("attn.c_attn.weight", {keep.channels, qkv});
    both("attn.c_attn.bias", {qkv, {}});
    both("attn.c_proj.weight", {heads, keep.channels});
    both("attn.c_proj.bias", channel_rows);
    both("mlp.c_fc.weight", {keep.channels, neurons});
    both("mlp.c_fc.bias", {neurons, {}});
    both("mlp.c_proj.weight", {neurons, keep.channels});
    both("mlp.c_proj.bias", channel_rows);
  }
  Compacted c;
  c.options = compacted_gpt_options(gpt, keep);
  c.model = models::make_model(c.options);
  models::load_weights(*c.model, weights, "compaction of model.gpt");
  c.model->train(gpt.is_training());
  c.params_before = models::count_parameters(gpt);
  c.params_after = models::count_parameters(*c.model);
  return c;
}

}  // namespace retort::prune
