#include "models/gpt.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "amp/ops.h"
#include "core/error.h"
#include "core/text.h"

namespace retort::models {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

void check_options(const ModelOptions& o) {
  auto at_least = [](const char* key, int64_t value, int64_t least) {
    if (value < least) throw ConfigError(std::string(key) + ": expected >= " + str(least) + ", got " + str(value));
  };
  at_least("model.vocab_size", o.vocab_size, 1);
  at_least("model.context", o.context, 1);
  at_least("model.dim", o.dim, 1);
  at_least("model.depth", o.depth, 1);
  at_least("model.heads", o.heads, 1);
  at_least("model.mlp_dim", o.mlp_dim, 0);
  at_least("model.head_dim", o.head_dim, 0);
  if (o.head_dim == 0 && o.dim % o.heads != 0)
    throw ConfigError("model.heads: " + str(o.heads) + " does not divide model.dim " + str(o.dim) +
                      " (each head gets dim / heads channels; or set model.head_dim)");
  if (o.dropout < 0 || o.dropout >= 1)
    throw ConfigError("model.dropout: expected in [0, 1), got " + format_number(o.dropout));
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// As Hugging Face computes GPT-2's Conv1D: addmm over the flattened tokens, W used as stored.
torch::Tensor Gpt::Conv1D::operator()(const torch::Tensor& x) const {
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(1);
  return amp::addmm(bias, x.reshape({-1, x.size(-1)}), weight).view(sizes);
}

Gpt::Conv1D Gpt::add_conv1d(torch::nn::Module& parent, const std::string& name, int64_t in, int64_t out,
                            double stddev) {
  auto holder = parent.register_module(name, std::make_shared<torch::nn::Module>());
  Conv1D c;
  c.weight = holder->register_parameter("weight", torch::empty({in, out}).normal_(0.0, stddev));
  c.bias = holder->register_parameter("bias", torch::zeros({out}));
  return c;
}

Gpt::Gpt(ModelOptions o) : Model(std::move(o)) {
  const auto& opt = options_;
  check_options(opt);
  const int64_t D = opt.dim;
  mlp_width_ = opt.mlp_dim > 0 ? opt.mlp_dim : 4 * D;
  head_width_ = opt.head_dim > 0 ? opt.head_dim : D / opt.heads;
  const int64_t A = opt.heads * head_width_;  // attention width: D unless head_dim says otherwise
  // GPT-2's initialisation: the projections that end in the residual stream are scaled
  // down by sqrt(2 depth) (two per layer), so the stream's variance does not grow with depth.
  const double init_std = 0.02, residual_std = init_std / std::sqrt(2.0 * static_cast<double>(opt.depth));
  auto layer_norm = [D] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(1e-5)); };

  auto transformer = register_module("transformer", std::make_shared<torch::nn::Module>());
  wte_ = transformer->register_module("wte", std::make_shared<torch::nn::Module>())
             ->register_parameter("weight", torch::empty({opt.vocab_size, D}).normal_(0.0, init_std));
  wpe_ = transformer->register_module("wpe", std::make_shared<torch::nn::Module>())
             ->register_parameter("weight", torch::empty({opt.context, D}).normal_(0.0, init_std));
  block_list_ = transformer->register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < opt.depth; ++i) {
    Block b;
    auto holder = std::make_shared<torch::nn::Module>();
    b.ln_1 = holder->register_module("ln_1", layer_norm());
    auto attn = holder->register_module("attn", std::make_shared<torch::nn::Module>());
    b.c_attn = add_conv1d(*attn, "c_attn", D, 3 * A, init_std);
    b.attn_proj = add_conv1d(*attn, "c_proj", A, D, residual_std);
    b.ln_2 = holder->register_module("ln_2", layer_norm());
    auto mlp = holder->register_module("mlp", std::make_shared<torch::nn::Module>());
    b.c_fc = add_conv1d(*mlp, "c_fc", D, mlp_width_, init_std);
    b.mlp_proj = add_conv1d(*mlp, "c_proj", mlp_width_, D, residual_std);
    block_list_->push_back(holder);
    blocks_.push_back(std::move(b));
  }
  ln_f_ = transformer->register_module("ln_f", layer_norm());
}

// Causal self-attention of h [B, T, D]; with a cache, over the cached keys and values too
// (which this step's are appended to). masked [T, past + T]: true where a query may not look.
torch::Tensor Gpt::attend(const Block& b, const torch::Tensor& h, const torch::Tensor& masked, KvCache* cache,
                          size_t layer, torch::Tensor& attention) {
  const int64_t B = h.size(0), T = h.size(1);
  const int64_t H = options_.heads, Dh = head_width_;
  auto qkv = b.c_attn(h).reshape({B, T, 3, H, Dh}).permute({2, 0, 3, 1, 4});  // [3, B, H, T, Dh]
  auto q = qkv[0], k = qkv[1], v = qkv[2];
  if (cache && cache->keys.size() > layer) {
    k = torch::cat({cache->keys[layer], k}, 2);
    v = torch::cat({cache->values[layer], v}, 2);
    cache->keys[layer] = k;
    cache->values[layer] = v;
  } else if (cache) {
    cache->keys.push_back(k);
    cache->values.push_back(v);
  }
  auto scores = amp::attention_scores(q, k, 1.0 / std::sqrt(static_cast<double>(Dh)))  // [B, H, T, past + T]
                    .masked_fill(masked, -std::numeric_limits<double>::infinity());
  auto probs = amp::softmax(scores, -1);  // fp32 under autocast
  if (keep_attention()) attention = probs;
  auto ctx = amp::matmul(torch::dropout(probs, options_.dropout, is_training()), v);  // [B, H, T, Dh]
  report(GptSite::kHeads, layer, ctx);
  ctx = ctx.transpose(1, 2).reshape({B, T, H * Dh});
  return torch::dropout(b.attn_proj(ctx), options_.dropout, is_training());
}

torch::Tensor Gpt::block(const Block& b, const torch::Tensor& x, const torch::Tensor& masked, KvCache* cache,
                         size_t layer, torch::Tensor& attention) {
  const int64_t D = options_.dim;
  report(GptSite::kBlockInput, layer, x);
  auto h = amp::layer_norm(x, {D}, b.ln_1->weight, b.ln_1->bias, b.ln_1->options.eps());
  report(GptSite::kLn1, layer, h);
  // amp::add promotes: the residual stream stays fp32 while the branches run low.
  auto y = amp::add(x, attend(b, h, masked, cache, layer, attention));
  h = amp::layer_norm(y, {D}, b.ln_2->weight, b.ln_2->bias, b.ln_2->options.eps());
  report(GptSite::kLn2, layer, h);
  h = amp::gelu(b.c_fc(h), "tanh");  // GPT-2's gelu_new
  report(GptSite::kMlpHidden, layer, h);
  h = torch::dropout(b.mlp_proj(h), options_.dropout, is_training());
  return amp::add(y, h);
}

Output Gpt::run(const torch::Tensor& ids, KvCache* cache) {
  if (ids.dim() != 2 || ids.scalar_type() != torch::kLong || ids.size(1) < 1) {
    std::ostringstream got;
    got << ids.scalar_type() << " " << ids.sizes();
    throw DataError("gpt: expected token ids [batch, tokens >= 1] of int64, got " + got.str());
  }
  const int64_t past = cache ? cache->length() : 0, T = ids.size(1);
  if (cache && !cache->keys.empty() &&
      (cache->keys.size() != blocks_.size() || cache->keys.front().size(0) != ids.size(0)))
    throw Error("gpt: the KV cache holds " + str(static_cast<int64_t>(cache->keys.size())) + " layers of batch " +
                str(cache->keys.front().size(0)) + ", not this model's " + str(options_.depth) + " of batch " +
                str(ids.size(0)));
  if (past + T > options_.context)
    throw ConfigError("model.context: the model has " + str(options_.context) + " positions, got " +
                      (past > 0 ? str(past) + " cached + " : "") + str(T) + " tokens");
  auto positions = torch::arange(past, past + T, ids.options());
  auto x = torch::embedding(wte_, ids) + torch::embedding(wpe_, positions);  // [B, T, D]
  x = torch::dropout(x, options_.dropout, is_training());
  // Query i (position past + i) sees keys 0 .. past + i.
  auto masked = torch::ones({T, past + T}, ids.options().dtype(torch::kBool)).triu(past + 1);
  Output out;
  out.hidden.reserve(blocks_.size());
  for (size_t l = 0; l < blocks_.size(); ++l) {
    torch::Tensor attention;
    x = block(blocks_[l], x, masked, cache, l, attention);
    out.hidden.push_back(x);                                      // [B, T, D]
    if (attention.defined()) out.attention.push_back(attention);  // [B, H, T, past + T]
  }
  x = amp::layer_norm(x, {options_.dim}, ln_f_->weight, ln_f_->bias, ln_f_->options.eps());
  report(GptSite::kLnF, blocks_.size(), x);
  out.logits = amp::linear(x, wte_);  // tied output projection: [B, T, V]
  return out;
}

Output Gpt::forward(const torch::Tensor& ids) { return run(ids, nullptr); }

torch::Tensor Gpt::forward_cached(const torch::Tensor& ids, KvCache& cache) { return run(ids, &cache).logits; }

std::vector<std::string> Gpt::hidden_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < blocks_.size(); ++i) names.push_back("layer" + std::to_string(i));
  return names;
}

std::vector<std::string> Gpt::hidden_kinds() const { return std::vector<std::string>(blocks_.size(), "vector"); }

std::map<std::string, torch::Tensor> Gpt::normalize_weights(std::map<std::string, torch::Tensor> tensors,
                                                            const std::string& origin) const {
  const std::string prefix = "transformer.";
  if (!tensors.count(prefix + "wte.weight") && tensors.count("wte.weight")) {  // saved from a bare GPT2Model
    std::map<std::string, torch::Tensor> prefixed;
    for (auto& [name, t] : tensors) prefixed[name == "lm_head.weight" ? name : prefix + name] = t;
    tensors = std::move(prefixed);
  }
  for (auto it = tensors.begin(); it != tensors.end();) {
    const bool mask_buffer = it->first.rfind(prefix + "h.", 0) == 0 &&
                             (ends_with(it->first, ".attn.bias") || ends_with(it->first, ".attn.masked_bias"));
    it = mask_buffer ? tensors.erase(it) : std::next(it);
  }
  auto head = tensors.find("lm_head.weight");
  auto wte = tensors.find(prefix + "wte.weight");
  if (head != tensors.end() && wte != tensors.end()) {
    const auto& h = head->second;
    if (h.sizes() != wte->second.sizes() || !torch::equal(h.to(wte->second.scalar_type()), wte->second))
      throw CheckpointError("weights in '" + origin +
                            "': lm_head.weight differs from transformer.wte.weight; the gpt model ties its output "
                            "projection to the token embedding and cannot load an untied head");
    tensors.erase(head);
  }
  return tensors;
}

}  // namespace retort::models
