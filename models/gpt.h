#pragma once
/// GPT family (registry name "gpt"): a decoder-only causal language model, GPT-2's design.
///   models::ModelOptions o;  o.name = "gpt";  o.vocab_size = 256;  o.context = 128;
///   o.dim = 128;  o.depth = 4;  o.heads = 4;               // o.mlp_dim 0: 4 * dim
///                                                          // o.head_dim 0: dim / heads
///   auto gpt = models::make_model(o);
///   auto out = gpt->forward(ids);   // ids [B, T] int64, T <= context; out.logits [B, T, vocab];
///                                   // out.hidden[l] [B, T, D]; out.attention[l] [B, heads, T, T]
///                                   // only after gpt->set_keep_attention(true)
///   models::GenerateOptions g;  g.tokens = 50;  g.temperature = 0.8;  g.top_k = 40;  g.seed = 1;
///   std::vector<int64_t> next = models::generate(*gpt, prompt, g);   // models/generate.h
///
/// Token and learned position embeddings (dropout model.dropout), then per layer
/// x = x + drop(c_proj(attn(ln_1(x)))), x = x + drop(mlp.c_proj(gelu_tanh(c_fc(ln_2(x))))),
/// causal attention with dropout on its probabilities; then ln_f and the output projection,
/// which is the token embedding itself (tied: one tensor, transformer.wte.weight).
/// Hidden states: each layer's output ("layer0", ...), kind "vector" ([B, T, D] tokens).
/// Parameter names and layouts are Hugging Face GPT-2's (transformer.wte.weight [V, D],
/// transformer.wpe.weight [P, D], transformer.h.0.ln_1.weight, transformer.h.0.attn.c_attn.weight
/// [D, 3 A] (Conv1D: stored [in, out], y = x @ W + b; A = heads * head_dim, which is D unless
/// model.head_dim says otherwise), attn.c_proj [A, D], ln_2, mlp.c_fc, mlp.c_proj,
/// transformer.ln_f.weight), so exported weights load into GPT2LMHeadModel and into the twin in
/// bench/reference/gpt2.py; models/hf_gpt2.h writes and reads GPT-2's config.json.
/// Initialised as GPT-2: normal(0, 0.02), the residual projections (c_proj) 0.02 / sqrt(2 depth).
/// Every matmul, norm and softmax goes through amp/ops.h, so autocast applies.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "models/model.h"

namespace retort::models {

/// The keys and values of the tokens a Gpt has read, per layer, for incremental decoding.
struct KvCache {
  std::vector<torch::Tensor> keys, values;  ///< per layer [B, heads, length, head_dim]
  int64_t length() const { return keys.empty() ? 0 : keys.front().size(2); }
};

/// Where a Gpt's forward reports an activation to its probe (set_probe), for the activation
/// statistics structured pruning ranks by (prune/gpt_importance.h).
enum class GptSite {
  kBlockInput,  ///< [B, T, D] the residual stream entering block `layer`
  kLn1,         ///< [B, T, D] ln_1's output
  kHeads,       ///< [B, heads, T, head_dim] each head's attention output, before c_proj
  kLn2,         ///< [B, T, D] ln_2's output
  kMlpHidden,   ///< [B, T, mlp] the MLP's hidden activation, after GELU
  kLnF,         ///< [B, T, D] ln_f's output (layer: depth)
};
using GptProbe = std::function<void(GptSite site, int64_t layer, const torch::Tensor& activation)>;

class Gpt : public Model {
 public:
  /// ConfigError naming the key for: vocab_size, context, dim, depth or heads below 1, dim not
  /// a multiple of heads (with head_dim 0), mlp_dim or head_dim below 0, dropout outside [0, 1).
  explicit Gpt(ModelOptions options);
  /// ids [B, T] int64. ConfigError naming model.context when T exceeds it.
  Output forward(const torch::Tensor& ids) override;
  std::vector<std::string> hidden_names() const override;
  std::vector<std::string> hidden_kinds() const override;
  /// Drops what GPT-2 checkpoints carry beside the parameters: the attention-mask buffers
  /// (h.N.attn.bias, h.N.attn.masked_bias) and lm_head.weight when it equals the token
  /// embedding (CheckpointError when it differs: this model ties them); adds the
  /// "transformer." prefix to files saved from a bare GPT2Model.
  std::map<std::string, torch::Tensor> normalize_weights(std::map<std::string, torch::Tensor> tensors,
                                                         const std::string& origin) const override;

  /// Logits [B, T, vocab] of `ids` [B, T] read as the continuation of the tokens in `cache`
  /// (positions cache.length() on), whose keys and values it appends: the prompt once, then
  /// a token per call, each step attending over the cached ones. The same logits as forward()
  /// of the whole sequence. ConfigError naming model.context when the total exceeds it.
  torch::Tensor forward_cached(const torch::Tensor& ids, KvCache& cache);

  int64_t context() const { return options_.context; }
  int64_t vocab_size() const { return options_.vocab_size; }
  /// Width of the MLP's hidden layer: model.mlp_dim, or 4 * dim when it is 0.
  int64_t mlp_width() const { return mlp_width_; }
  /// Width of each head: model.head_dim, or dim / heads when it is 0.
  int64_t head_width() const { return head_width_; }
  /// Called with activations at every GptSite of each forward (null: none, the default).
  /// The activations are the forward's own tensors: a probe reads them, never changes them.
  void set_probe(GptProbe probe) { probe_ = std::move(probe); }

 private:
  struct Conv1D {  // GPT-2's projection: weight [in, out], bias [out]; y = x @ W + b
    torch::Tensor weight, bias;
    torch::Tensor operator()(const torch::Tensor& x) const;
  };
  struct Block {
    torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
    Conv1D c_attn, attn_proj, c_fc, mlp_proj;
  };
  static Conv1D add_conv1d(torch::nn::Module& parent, const std::string& name, int64_t in, int64_t out, double stddev);
  Output run(const torch::Tensor& ids, KvCache* cache);
  torch::Tensor attend(const Block& b, const torch::Tensor& h, const torch::Tensor& masked, KvCache* cache,
                       size_t layer, torch::Tensor& attention);
  torch::Tensor block(const Block& b, const torch::Tensor& x, const torch::Tensor& masked, KvCache* cache, size_t layer,
                      torch::Tensor& attention);
  void report(GptSite site, size_t layer, const torch::Tensor& activation) const {
    if (probe_) probe_(site, static_cast<int64_t>(layer), activation);
  }

  torch::Tensor wte_;                 // [V, D], also the output projection
  torch::Tensor wpe_;                 // [P, D]
  torch::nn::ModuleList block_list_;  // "transformer.h": owns each block's modules
  std::vector<Block> blocks_;
  torch::nn::LayerNorm ln_f_{nullptr};
  int64_t mlp_width_ = 0;
  int64_t head_width_ = 0;
  GptProbe probe_;
};

}  // namespace retort::models
