#include "models/transformer.h"

#include <cmath>

#include "amp/ops.h"
#include "core/error.h"

namespace retort::models {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

void check_options(const ModelOptions& o) {
  if (o.patch < 1) throw ConfigError("model.patch: expected >= 1, got " + str(o.patch));
  if (o.image_size % o.patch != 0)
    throw ConfigError("model.patch: " + str(o.patch) + " does not divide model.image_size " + str(o.image_size) +
                      "; choose a patch side that does (e.g. 4 or 7 for 28)");
  if (o.dim < 1 || o.heads < 1 || o.depth < 1)
    throw ConfigError("model.dim, model.heads, model.depth: expected >= 1, got " + str(o.dim) + ", " + str(o.heads) +
                      ", " + str(o.depth));
  if (o.dim % o.heads != 0)
    throw ConfigError("model.heads: " + str(o.heads) + " does not divide model.dim " + str(o.dim) +
                      " (each head gets dim / heads channels)");
  if (o.pool != "cls" && o.pool != "avg")
    throw ConfigError("model.pool: the vit model pools with cls (class token) or avg (mean of tokens), got '" +
                      o.pool + "'");
  if (!(o.mlp_ratio > 0) || std::llround(static_cast<double>(o.dim) * o.mlp_ratio) < 1)
    throw ConfigError("model.mlp_ratio: " + std::to_string(o.mlp_ratio) + " gives an MLP narrower than 1");
  if (o.dropout < 0 || o.dropout >= 1)
    throw ConfigError("model.dropout: expected in [0, 1), got " + std::to_string(o.dropout));
}

torch::Tensor maybe_dropout(const torch::Tensor& x, double p, bool training) {
  return p > 0 && training ? torch::dropout(x, p, true) : x;
}

}  // namespace

VisionTransformer::VisionTransformer(ModelOptions o) : Model(std::move(o)) {
  const auto& opt = options_;
  check_options(opt);
  const int64_t side = opt.image_size / opt.patch;
  tokens_ = side * side + (opt.pool == "cls" ? 1 : 0);
  const int64_t mlp = std::llround(static_cast<double>(opt.dim) * opt.mlp_ratio);

  patch_embed_ = register_module(
      "patch_embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(opt.in_channels, opt.dim, opt.patch).stride(opt.patch)));
  // Small normal init for the learned embeddings (as ViT/timm do): they start as a mild
  // perturbation of the patch features instead of drowning them.
  if (opt.pool == "cls") cls_token_ = register_parameter("cls_token", torch::randn({1, 1, opt.dim}) * 0.02);
  pos_embed_ = register_parameter("pos_embed", torch::randn({1, tokens_, opt.dim}) * 0.02);

  layer_list_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < opt.depth; ++i) {
    Layer l;
    auto holder = std::make_shared<torch::nn::Module>();
    auto attn = std::make_shared<torch::nn::Module>();
    auto mlp_block = std::make_shared<torch::nn::Module>();
    l.norm1 = holder->register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({opt.dim})));
    l.qkv = attn->register_module("qkv", torch::nn::Linear(opt.dim, 3 * opt.dim));
    l.proj = attn->register_module("proj", torch::nn::Linear(opt.dim, opt.dim));
    holder->register_module("attn", attn);
    l.norm2 = holder->register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({opt.dim})));
    l.fc1 = mlp_block->register_module("fc1", torch::nn::Linear(opt.dim, mlp));
    l.fc2 = mlp_block->register_module("fc2", torch::nn::Linear(mlp, opt.dim));
    holder->register_module("mlp", mlp_block);
    layer_list_->push_back(holder);
    layers_.push_back(std::move(l));
  }
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({opt.dim})));
  head_ = register_module("head", torch::nn::Linear(opt.dim, opt.num_classes));
}

torch::Tensor VisionTransformer::block(Layer& l, const torch::Tensor& x, torch::Tensor& attention) {
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
  const int64_t H = options_.heads, Dh = D / H;
  // --- attention ---------------------------------------------------------------------
  auto h = amp::layer_norm(x, {D}, l.norm1->weight, l.norm1->bias, l.norm1->options.eps());
  auto qkv = amp::linear(h, l.qkv->weight, l.qkv->bias)  // [B, T, 3D]
                 .reshape({B, T, 3, H, Dh})
                 .permute({2, 0, 3, 1, 4});  // [3, B, H, T, Dh]
  auto q = qkv[0], k = qkv[1], v = qkv[2];
  auto scores = amp::attention_scores(q, k, 1.0 / std::sqrt(static_cast<double>(Dh)));  // [B, H, T, T]
  attention = amp::softmax(scores, -1);                                                  // fp32 under autocast
  auto ctx = amp::matmul(attention, v).transpose(1, 2).reshape({B, T, D});               // [B, T, D]
  auto a = maybe_dropout(amp::linear(ctx, l.proj->weight, l.proj->bias), options_.dropout, is_training());
  // amp::add promotes: the residual stream stays fp32 while the branches run low.
  auto y = amp::add(x, a);
  // --- MLP ---------------------------------------------------------------------------
  h = amp::layer_norm(y, {D}, l.norm2->weight, l.norm2->bias, l.norm2->options.eps());
  h = torch::gelu(amp::linear(h, l.fc1->weight, l.fc1->bias));
  h = maybe_dropout(amp::linear(h, l.fc2->weight, l.fc2->bias), options_.dropout, is_training());
  return amp::add(y, h);
}

Output VisionTransformer::forward(const torch::Tensor& input) {
  Output out;
  const int64_t B = input.size(0);
  auto x = amp::conv2d(input, patch_embed_->weight, patch_embed_->bias, options_.patch)  // [B, D, S/p, S/p]
               .flatten(2)
               .transpose(1, 2);  // [B, N, D]
  if (cls_token_.defined()) x = amp::cat({cls_token_.expand({B, 1, options_.dim}), x}, 1);  // [B, T, D]
  x = amp::add(x, pos_embed_);
  out.hidden.reserve(layers_.size());
  out.attention.reserve(layers_.size());
  for (auto& l : layers_) {
    torch::Tensor attention;
    x = block(l, x, attention);
    out.hidden.push_back(x);             // [B, T, D]
    out.attention.push_back(attention);  // [B, H, T, T]
  }
  x = amp::layer_norm(x, {options_.dim}, norm_->weight, norm_->bias, norm_->options.eps());
  auto pooled = cls_token_.defined() ? x.select(1, 0) : x.mean(1);  // [B, D]
  out.logits = amp::linear(pooled, head_->weight, head_->bias);
  return out;
}

std::vector<std::string> VisionTransformer::hidden_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < layers_.size(); ++i) names.push_back("layer" + std::to_string(i));
  return names;
}

std::vector<std::string> VisionTransformer::hidden_kinds() const {
  return std::vector<std::string>(layers_.size(), "vector");
}

}  // namespace retort::models
