#pragma once
/// Transformer family (registry name "vit"): a pre-LayerNorm encoder over image patches.
///   models::ModelOptions o;  o.name = "vit";  o.patch = 4;  o.dim = 64;  o.depth = 4;
///   o.heads = 4;  o.pool = "cls";
///   auto vit = models::make_model(o);
///   auto out = vit->forward(x);   // x [B, C, H, W]; out.hidden[l] [B, T, D];
///                                 // out.attention[l] [B, heads, T, T]
///
/// patch_embed: a patch x patch convolution with stride patch (one token per patch), then
/// a learned position embedding; with pool "cls" a learned class token is prepended
/// (T = patches + 1) and classifies, with pool "avg" the tokens are averaged (T = patches).
/// Each layer: x = x + proj(attn(LN(x))), x = x + fc2(GELU(fc1(LN(x)))); dropout
/// (model.dropout) after proj and fc2. Then a final LN and the linear head.
/// Hidden states: each layer's output ("layer0", ...), kind "vector" ([B, T, D] tokens).
/// Parameter names follow PyTorch/timm habits (patch_embed.weight, pos_embed, cls_token,
/// layers.0.norm1.weight, layers.0.attn.qkv.weight, layers.0.attn.proj.weight,
/// layers.0.mlp.fc1.weight, norm.weight, head.weight), so exported weights load into the
/// twin in bench/reference/distill_golden.py with load_state_dict(strict=True).
/// Every matmul, norm and softmax goes through amp/ops.h, so autocast applies.
#include "models/model.h"

namespace retort::models {

class VisionTransformer : public Model {
 public:
  /// ConfigError naming the key for: image_size not a multiple of patch, dim not a
  /// multiple of heads, pool other than cls / avg, an MLP width below 1.
  explicit VisionTransformer(ModelOptions options);
  Output forward(const torch::Tensor& x) override;
  std::vector<std::string> hidden_names() const override;
  std::vector<std::string> hidden_kinds() const override;

  /// Tokens per image: patches (+1 with the class token).
  int64_t tokens() const { return tokens_; }

 private:
  struct Layer {
    torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
    torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  };
  torch::Tensor block(Layer& layer, const torch::Tensor& x, torch::Tensor& attention);

  torch::nn::Conv2d patch_embed_{nullptr};
  torch::nn::ModuleList layer_list_;  // "layers": owns each layer's modules (names layers.<i>.*)
  torch::Tensor cls_token_;  // [1, 1, D]; undefined with pool avg
  torch::Tensor pos_embed_;  // [1, T, D]
  std::vector<Layer> layers_;
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear head_{nullptr};
  int64_t tokens_ = 0;
};

}  // namespace retort::models
