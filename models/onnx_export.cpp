#include "models/onnx_export.h"

#include <cmath>
#include <limits>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/text.h"
#include "models/gpt.h"
#include "models/onnx_graph.h"
#include "models/weights.h"

namespace retort::models {
namespace {

using Attr = OnnxAttribute;

std::string str(int64_t v) { return std::to_string(v); }

/// The layers retort's families are made of, as ONNX nodes that compute what the family's
/// forward computes in eval mode. Weights are the model's parameters and buffers by their
/// state-dict names, each stored once (the gpt's tied embedding is one initializer).
class OnnxLayers {
 public:
  OnnxLayers(const Model& model, OnnxGraph& graph);
  OnnxGraph& graph() { return graph_; }

  /// The parameter or buffer `name` as an fp32 initializer, stored on first use. Every
  /// weight enters the graph here: an int8 layer's as its int8 values, scales and zero
  /// points through DequantizeLinear (the QDQ form runtimes fuse into int8 kernels).
  std::string weight(const std::string& name);
  /// x @ W^T (+ b): torch's linear, W `<prefix>.weight` [out, in], b `<prefix>.bias` if any.
  std::string linear(const std::string& x, const std::string& prefix);
  /// x @ W + b: GPT-2's Conv1D, W [in, out].
  std::string conv1d(const std::string& x, const std::string& prefix);
  /// A 2-D convolution as amp::conv2d(x, W, b, stride, pad) computes it.
  std::string conv2d(const std::string& x, const std::string& prefix, int64_t stride, int64_t pad);
  /// Batch norm from the running statistics, with the module's epsilon.
  std::string batch_norm(const std::string& x, const std::string& prefix);
  /// LayerNorm over the last axis, with the module's epsilon.
  std::string layer_norm(const std::string& x, const std::string& prefix);
  std::string relu(const std::string& x) { return graph_.op("Relu", {x}); }
  std::string add(const std::string& a, const std::string& b) { return graph_.op("Add", {a, b}); }
  std::string gelu_erf(const std::string& x);
  std::string gelu_tanh(const std::string& x);
  /// Multi-head attention over qkv [B, T, 3 H Dh] (q, k, v each H heads of Dh) as the
  /// models compute it; scores set to -inf where `masked` [T, T] is true ("": no mask).
  /// Returns the heads' context [B, T, H Dh], before the output projection.
  std::string self_attention(const std::string& qkv, int64_t heads, int64_t head_dim, const std::string& masked);

 private:
  /// The module `name` of the model as an M (its options hold what the weights do not).
  template <typename M>
  const M& module(const std::string& name) const;

  /// x as the int8 layer `prefix` quantizes its input: QuantizeLinear then DequantizeLinear
  /// with the calibrated parameters (static), or DynamicQuantizeLinear's (dynamic); x
  /// itself for an fp32 layer.
  std::string layer_input(const std::string& x, const std::string& prefix);
  /// y as the layer requantizes its output (static); y itself otherwise.
  std::string layer_output(const std::string& y, const std::string& prefix);
  std::string quantize_dequantize(const std::string& x, const Affine8& a);
  const Int8Layer* int8_layer(const std::string& prefix) const;

  OnnxGraph& graph_;
  std::map<std::string, torch::Tensor> weights_;
  std::map<std::string, Int8Layer> int8_;  ///< by weight name
  std::map<std::string, std::string> dequantized_;  ///< an int8 weight's DequantizeLinear output
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules_;
  std::set<std::string> stored_;
  std::string family_;
};

OnnxLayers::OnnxLayers(const Model& model, OnnxGraph& graph)
    : graph_(graph), weights_(weights_of(model)), family_(model.options().name) {
  for (const auto& item : model.named_modules()) modules_[item.key()] = item.value();
  for (const auto& l : model.int8_layers()) int8_[l.weight_name()] = l;
}

std::string OnnxLayers::weight(const std::string& name) {
  const auto it = weights_.find(name);
  if (it == weights_.end())
    throw Error("onnx export: the " + family_ + " model has no parameter or buffer '" + name + "'");
  const auto q = int8_.find(name);
  if (q == int8_.end()) {
    if (stored_.insert(name).second) graph_.initializer(name, it->second.to(torch::kFloat));
    return name;
  }
  auto& out = dequantized_[name];
  if (out.empty()) {
    const auto& l = q->second;
    const auto scale = l.scale.flatten();
    out = graph_.op("DequantizeLinear",
                    {graph_.initializer(name, l.values), graph_.initializer(l.name + ".weight_scale", scale),
                     graph_.initializer(l.name + ".weight_zero_point", torch::zeros_like(scale, torch::kChar))},
                    {Attr::integer("axis", l.axis())});
  }
  return out;
}

const Int8Layer* OnnxLayers::int8_layer(const std::string& prefix) const {
  const auto it = int8_.find(prefix + ".weight");
  return it == int8_.end() ? nullptr : &it->second;
}

std::string OnnxLayers::quantize_dequantize(const std::string& x, const Affine8& a) {
  const auto scale = graph_.scalar(a.scale);
  const auto zero_point = graph_.constant(torch::tensor(static_cast<uint8_t>(a.zero_point), torch::kByte));
  return graph_.op("DequantizeLinear", {graph_.op("QuantizeLinear", {x, scale, zero_point}), scale, zero_point});
}

std::string OnnxLayers::layer_input(const std::string& x, const std::string& prefix) {
  const Int8Layer* l = int8_layer(prefix);
  if (!l) return x;
  if (l->input) return quantize_dequantize(x, *l->input);
  const auto q = graph_.ops("DynamicQuantizeLinear", {x}, 3);  // uint8, its range over this input and 0
  return graph_.op("DequantizeLinear", q);
}

std::string OnnxLayers::layer_output(const std::string& y, const std::string& prefix) {
  const Int8Layer* l = int8_layer(prefix);
  return l && l->output ? quantize_dequantize(y, *l->output) : y;
}

template <typename M>
const M& OnnxLayers::module(const std::string& name) const {
  const auto it = modules_.find(name);
  const M* m = it == modules_.end() ? nullptr : dynamic_cast<const M*>(it->second.get());
  if (!m) throw Error("onnx export: the " + family_ + " model has no module '" + name + "' of the expected kind");
  return *m;
}

std::string OnnxLayers::linear(const std::string& x, const std::string& prefix) {
  // A Transpose of the stored weight rather than a transposed copy: the gpt's output
  // projection is its token embedding, one tensor in the file; runtimes fold it at load.
  auto y = graph_.op("MatMul", {layer_input(x, prefix), graph_.op("Transpose", {weight(prefix + ".weight")})});
  return layer_output(weights_.count(prefix + ".bias") ? add(y, weight(prefix + ".bias")) : y, prefix);
}

std::string OnnxLayers::conv1d(const std::string& x, const std::string& prefix) {
  auto y = graph_.op("MatMul", {layer_input(x, prefix), weight(prefix + ".weight")});
  return layer_output(add(y, weight(prefix + ".bias")), prefix);
}

std::string OnnxLayers::conv2d(const std::string& x, const std::string& prefix, int64_t stride, int64_t pad) {
  std::vector<std::string> inputs = {layer_input(x, prefix), weight(prefix + ".weight")};
  const auto& w = weights_.at(prefix + ".weight");  // [out, in, kh, kw]
  if (weights_.count(prefix + ".bias")) inputs.push_back(weight(prefix + ".bias"));
  return layer_output(graph_.op("Conv", inputs,
                                {Attr::integers("kernel_shape", {w.size(2), w.size(3)}),
                                 Attr::integers("strides", {stride, stride}),
                                 Attr::integers("pads", {pad, pad, pad, pad})}),
                      prefix);
}

std::string OnnxLayers::batch_norm(const std::string& x, const std::string& prefix) {
  const double eps = module<torch::nn::BatchNorm2dImpl>(prefix).options.eps();
  return graph_.op("BatchNormalization",
                   {x, weight(prefix + ".weight"), weight(prefix + ".bias"), weight(prefix + ".running_mean"),
                    weight(prefix + ".running_var")},
                   {Attr::real("epsilon", eps)});
}

std::string OnnxLayers::layer_norm(const std::string& x, const std::string& prefix) {
  const double eps = module<torch::nn::LayerNormImpl>(prefix).options.eps();
  return graph_.op("LayerNormalization", {x, weight(prefix + ".weight"), weight(prefix + ".bias")},
                   {Attr::integer("axis", -1), Attr::real("epsilon", eps)});
}

// torch::gelu(x): x * 0.5 * (1 + erf(x / sqrt(2))). (opset 20's Gelu is past opset 17.)
std::string OnnxLayers::gelu_erf(const std::string& x) {
  auto& g = graph_;
  auto erf = g.op("Erf", {g.op("Mul", {x, g.scalar(M_SQRT1_2)})});
  return g.op("Mul", {g.op("Mul", {x, g.scalar(0.5)}), g.op("Add", {erf, g.scalar(1.0)})});
}

// torch::gelu(x, "tanh"), GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
std::string OnnxLayers::gelu_tanh(const std::string& x) {
  auto& g = graph_;
  auto cube = g.op("Mul", {g.op("Mul", {x, x}), x});
  auto inner = g.op("Mul", {g.op("Add", {x, g.op("Mul", {cube, g.scalar(0.044715)})}),
                            g.scalar(M_SQRT2 * M_2_SQRTPI * 0.5)});
  auto tanh = g.op("Tanh", {inner});
  return g.op("Mul", {g.op("Mul", {x, g.scalar(0.5)}), g.op("Add", {tanh, g.scalar(1.0)})});
}

std::string OnnxLayers::self_attention(const std::string& qkv, int64_t heads, int64_t head_dim,
                                       const std::string& masked) {
  auto& g = graph_;
  auto split = g.op("Transpose", {g.op("Reshape", {qkv, g.ints({0, 0, 3, heads, head_dim})})},
                    {Attr::integers("perm", {2, 0, 3, 1, 4})});  // [3, B, H, T, Dh]
  auto part = [&](int64_t i) {
    return g.op("Gather", {split, g.constant(torch::tensor(i))}, {Attr::integer("axis", 0)});
  };
  // q and k each scaled by sqrt(1 / sqrt(Dh)) before their product, as amp::attention_scores
  // does: an fp16 engine (TensorRT) then overflows no sooner than retort under autocast.
  const auto root = g.scalar(std::sqrt(1.0 / std::sqrt(static_cast<double>(head_dim))));
  auto q = g.op("Mul", {part(0), root});
  auto k = g.op("Transpose", {g.op("Mul", {part(1), root})}, {Attr::integers("perm", {0, 1, 3, 2})});
  auto scores = g.op("MatMul", {q, k});  // [B, H, T, T]
  if (!masked.empty()) scores = g.op("Where", {masked, g.scalar(-std::numeric_limits<double>::infinity()), scores});
  auto probs = g.op("Softmax", {scores}, {Attr::integer("axis", -1)});
  auto context = g.op("MatMul", {probs, part(2)});  // [B, H, T, Dh]
  return g.op("Reshape", {g.op("Transpose", {context}, {Attr::integers("perm", {0, 2, 1, 3})}),
                          g.ints({0, 0, heads * head_dim})});
}

// ------------------------------------------------------------------------------------
// The families: each takes the graph's input and returns its logits.
// ------------------------------------------------------------------------------------

/// fc<i> + ReLU per hidden width, then the head: how the cnn and the mlp end.
std::string classifier(OnnxLayers& layers, std::string x, size_t hidden_layers) {
  for (size_t i = 0; i < hidden_layers; ++i) x = layers.relu(layers.linear(x, "fc" + std::to_string(i)));
  return layers.linear(x, "head");
}

std::string emit_cnn(OnnxLayers& layers, const Model& model, const std::string& input) {
  const auto& o = model.options();
  auto& g = layers.graph();
  std::string x = input;
  for (size_t s = 0; s < o.channels.size(); ++s) {
    const std::string stage = "stage" + std::to_string(s);
    for (int64_t j = 0; j < o.convs_per_stage; ++j) {
      x = layers.conv2d(x, stage + ".conv" + str(j), /*stride=*/1, /*pad=*/1);
      if (o.batch_norm) x = layers.batch_norm(x, stage + ".bn" + str(j));
      x = layers.relu(x);
    }
    x = g.op("MaxPool", {x}, {Attr::integers("kernel_shape", {2, 2}), Attr::integers("strides", {2, 2})});
  }
  x = o.pool == "avg" ? g.op("ReduceMean", {x}, {Attr::integers("axes", {2, 3}), Attr::integer("keepdims", 0)})
                      : g.op("Flatten", {x}, {Attr::integer("axis", 1)});
  return classifier(layers, x, o.hidden.size());
}

std::string emit_mlp(OnnxLayers& layers, const Model& model, const std::string& input) {
  auto x = layers.graph().op("Flatten", {input}, {Attr::integer("axis", 1)});
  return classifier(layers, x, model.options().hidden.size());
}

/// A pre-LayerNorm transformer block, x = x + proj(attention(ln1(x))), then
/// x = x + fc_out(GELU(fc_in(ln2(x)))): the weights' prefixes and the family's flavour.
struct BlockSpec {
  std::string ln1, qkv, proj, ln2, fc_in, fc_out;
  bool gpt2_conv1d = false;  ///< GPT-2's Conv1D projections (W [in, out]), not torch's linear
  bool gelu_tanh = false;    ///< GPT-2's tanh GELU, not the erf one
};

std::string transformer_block(OnnxLayers& layers, const std::string& x, const BlockSpec& b, int64_t heads,
                              int64_t head_dim, const std::string& masked) {
  auto project = [&](const std::string& in, const std::string& prefix) {
    return b.gpt2_conv1d ? layers.conv1d(in, prefix) : layers.linear(in, prefix);
  };
  auto context = layers.self_attention(project(layers.layer_norm(x, b.ln1), b.qkv), heads, head_dim, masked);
  auto y = layers.add(x, project(context, b.proj));
  auto h = project(layers.layer_norm(y, b.ln2), b.fc_in);
  h = b.gelu_tanh ? layers.gelu_tanh(h) : layers.gelu_erf(h);
  return layers.add(y, project(h, b.fc_out));
}

std::string emit_vit(OnnxLayers& layers, const Model& model, const std::string& input) {
  const auto& o = model.options();
  auto& g = layers.graph();
  auto patches = g.op("Reshape", {layers.conv2d(input, "patch_embed", o.patch, 0), g.ints({0, 0, -1})});
  auto x = g.op("Transpose", {patches}, {Attr::integers("perm", {0, 2, 1})});  // [B, patches, D]
  if (o.pool == "cls") {  // the class token, one per image, ahead of the patches
    auto batch = g.op("Shape", {input}, {Attr::integer("start", 0), Attr::integer("end", 1)});
    auto shape = g.op("Concat", {batch, g.ints({1, o.dim})}, {Attr::integer("axis", 0)});
    x = g.op("Concat", {g.op("Expand", {layers.weight("cls_token"), shape}), x}, {Attr::integer("axis", 1)});
  }
  x = layers.add(x, layers.weight("pos_embed"));
  for (int64_t i = 0; i < o.depth; ++i) {
    const std::string l = "layers." + str(i) + ".";
    const BlockSpec block = {l + "norm1", l + "attn.qkv", l + "attn.proj", l + "norm2", l + "mlp.fc1", l + "mlp.fc2"};
    x = transformer_block(layers, x, block, o.heads, o.dim / o.heads, "");
  }
  x = layers.layer_norm(x, "norm");
  auto pooled = o.pool == "cls"
                    ? g.op("Gather", {x, g.constant(torch::tensor(int64_t{0}))}, {Attr::integer("axis", 1)})
                    : g.op("ReduceMean", {x}, {Attr::integers("axes", {1}), Attr::integer("keepdims", 0)});
  return layers.linear(pooled, "head");
}

std::string emit_gpt(OnnxLayers& layers, const Model& model, const std::string& ids) {
  const auto& o = model.options();
  auto& g = layers.graph();
  // The tokens' count T at run time; positions 0 .. T-1 take the first T rows of wpe and
  // the top-left T x T of the causal mask (true where a query may not look).
  auto tokens = g.op("Shape", {ids}, {Attr::integer("start", 1), Attr::integer("end", 2)});
  auto positions = g.op("Slice", {layers.weight("transformer.wpe.weight"), g.ints({0}), tokens, g.ints({0})});
  auto causal = g.initializer("causal_mask", torch::ones({o.context, o.context}, torch::kBool).triu(1));
  auto square = g.op("Concat", {tokens, tokens}, {Attr::integer("axis", 0)});
  auto masked = g.op("Slice", {causal, g.ints({0, 0}), square, g.ints({0, 1})});
  auto x = layers.add(g.op("Gather", {layers.weight("transformer.wte.weight"), ids}, {Attr::integer("axis", 0)}),
                      positions);
  const int64_t head_dim = dynamic_cast<const Gpt&>(model).head_width();
  for (int64_t i = 0; i < o.depth; ++i) {
    const std::string l = "transformer.h." + str(i) + ".";
    BlockSpec block = {l + "ln_1", l + "attn.c_attn", l + "attn.c_proj", l + "ln_2", l + "mlp.c_fc", l + "mlp.c_proj"};
    block.gpt2_conv1d = block.gelu_tanh = true;
    x = transformer_block(layers, x, block, o.heads, head_dim, masked);
  }
  return layers.linear(layers.layer_norm(x, "transformer.ln_f"), "transformer.wte");  // tied output projection
}

using Emitter = std::string (*)(OnnxLayers& layers, const Model& model, const std::string& input);

const std::map<std::string, Emitter>& emitters() {
  static const std::map<std::string, Emitter> table = {
      {"cnn", emit_cnn}, {"gpt", emit_gpt}, {"mlp", emit_mlp}, {"vit", emit_vit}};
  return table;
}

}  // namespace

std::vector<std::string> onnx_families() {
  std::vector<std::string> names;
  for (const auto& [name, emit] : emitters()) names.push_back(name);
  return names;
}

std::string onnx_model_bytes(const Model& model, const std::map<std::string, std::string>& metadata) {
  const auto& o = model.options();
  const auto emitter = emitters().find(o.name);
  if (emitter == emitters().end())
    throw ConfigError("model.name: the " + o.name + " family has no ONNX export; exported are " +
                      join(onnx_families()));
  OnnxGraph graph("retort-" + o.name);
  OnnxLayers layers(model, graph);
  const bool tokens = o.language_model();
  const auto input = tokens ? graph.input("input", torch::kLong, {"batch", "tokens"})
                            : graph.input("input", torch::kFloat, {"batch", o.in_channels, o.image_size, o.image_size});
  const auto logits = emitter->second(layers, model, input);
  if (tokens)
    graph.output("logits", logits, torch::kFloat, {"batch", "tokens", o.vocab_size});
  else
    graph.output("logits", logits, torch::kFloat, {"batch", o.num_classes});
  return graph.serialize(metadata);
}

void save_onnx(const std::filesystem::path& path, const Model& model,
               const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, onnx_model_bytes(model, metadata));
}

}  // namespace retort::models
