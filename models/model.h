#pragma once
/// The model interface every architecture implements: logits AND hidden states, so that
/// distillation can match intermediate representations.
///   auto model = models::make_model(options);          // by registry name
///   models::Output out = model->forward(x);              // x: [B, 1, 28, 28]
///   out.logits;  // [B, classes]     out.hidden[i];  // per-stage features
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "launch/communicator.h"
#include "models/int8.h"

namespace retort::models {

struct Output {
  torch::Tensor logits;               // [B, num_classes]; language models (gpt): [B, T, vocab_size]
  std::vector<torch::Tensor> hidden;  // one per layer/stage, in depth order
  std::vector<torch::Tensor> attention;  // [B, heads, T, T] per layer (Transformers only; see keep_attention)
};

/// Architecture hyper-parameters, read from the `model:` section of a recipe.
struct ModelOptions {
  std::string name = "cnn";           ///< registry name: cnn, mlp, ...
  int64_t in_channels = 1;
  int64_t image_size = 28;
  int64_t num_classes = 10;
  // cnn
  std::vector<int64_t> channels = {32, 64};  ///< one entry per stage; each stage ends in 2x2 max-pool
  int64_t convs_per_stage = 2;
  /// Output channels of each convolution, stage-major (convs_per_stage per stage); empty:
  /// channels[s] for every convolution of stage s. Compacted (channel-pruned) models set it.
  std::vector<int64_t> conv_channels = {};
  bool batch_norm = true;
  std::string pool = "flatten";      ///< after the last stage: flatten or avg (global average)
  // cnn head and mlp
  std::vector<int64_t> hidden = {512};  ///< fully connected hidden widths
  double dropout = 0.0;
  // transformer (patch encoder)
  int64_t patch = 4;
  int64_t dim = 128;
  int64_t depth = 4;
  int64_t heads = 4;
  double mlp_ratio = 2.0;
  // gpt (causal language model; also dim, depth, heads, dropout)
  int64_t vocab_size = 256;  ///< token ids in [0, vocab_size): 256 for bytes, 50257 for GPT-2's BPE
  int64_t context = 256;     ///< positions: the longest sequence the model reads
  int64_t mlp_dim = 0;       ///< MLP width (GPT-2's n_inner); 0: 4 * dim
  /// Width of each attention head; 0: dim / heads (GPT-2). A pruned gpt keeps its heads'
  /// width while losing heads and channels, so heads * head_dim may differ from dim.
  int64_t head_dim = 0;
  static void declare(config::Fields<ModelOptions>& f);
  /// A causal language model: token ids in, next-token logits [B, T, vocab_size] out.
  bool language_model() const { return name == "gpt"; }
};

/// Base of every retort model. Not a TORCH_MODULE holder itself: the registry returns
/// std::shared_ptr<Model> so that callers hold any architecture through one type.
class Model : public torch::nn::Module {
 public:
  virtual Output forward(const torch::Tensor& x) = 0;
  /// One name per hidden state ("stage0", "fc0", ...), for layer maps and messages.
  virtual std::vector<std::string> hidden_names() const = 0;
  /// "map" for [B, C, H, W] feature maps, "vector" for [B, D] (or [B, T, D] tokens).
  virtual std::vector<std::string> hidden_kinds() const = 0;
  const ModelOptions& options() const { return options_; }

  /// Incoming weights (a file, a checkpoint) as this model names them, before load_weights
  /// matches them: a family whose published checkpoints carry more than its state (GPT-2's
  /// attention-mask buffers and tied lm_head) drops that here. `origin` names the source in
  /// errors. Default: unchanged.
  virtual std::map<std::string, torch::Tensor> normalize_weights(std::map<std::string, torch::Tensor> tensors,
                                                                 const std::string& /*origin*/) const {
    return tensors;
  }

  /// Attention maps in Output::attention cost [B, heads, T, T] per layer, held until the
  /// output goes: gpt returns them only after set_keep_attention(true) (attention
  /// distillation needs them); vit always returns them. A model made of models (a teacher
  /// ensemble) overrides it to pass it on.
  virtual void set_keep_attention(bool keep) { keep_attention_ = keep; }
  bool keep_attention() const { return keep_attention_; }

  /// Batch norm in training computes its statistics over every rank of `comm` (the
  /// trainer sets it for ddp.sync_batchnorm); null: each rank over its own samples.
  void set_batch_norm_sync(std::shared_ptr<launch::Communicator> comm) { batch_norm_sync_ = std::move(comm); }
  const std::shared_ptr<launch::Communicator>& batch_norm_sync() const { return batch_norm_sync_; }

  /// A quantized model (quant/): the int8 layers it computes with, whose kernels stay
  /// registered for the layers' weights while the model holds `kernels`; its fp32
  /// parameters hold the dequantized weights, for ops outside the layers (GPT-2's
  /// embedding lookup of the tied wte).
  void set_int8(std::vector<Int8Layer> layers, std::shared_ptr<const amp::LayerKernels> kernels) {
    int8_layers_ = std::move(layers);
    int8_kernels_ = std::move(kernels);
  }
  const std::vector<Int8Layer>& int8_layers() const { return int8_layers_; }
  bool quantized() const { return !int8_layers_.empty(); }

 protected:
  explicit Model(ModelOptions options) : options_(std::move(options)) {}
  ModelOptions options_;

 private:
  std::shared_ptr<launch::Communicator> batch_norm_sync_;
  bool keep_attention_ = false;
  std::vector<Int8Layer> int8_layers_;
  std::shared_ptr<const amp::LayerKernels> int8_kernels_;
};

using ModelFactory = std::function<std::shared_ptr<Model>(const ModelOptions&)>;

/// Registers an architecture under `name` (models/registry.cpp registers the built-ins).
void register_model(const std::string& name, ModelFactory factory);
/// Names known to the registry, sorted.
std::vector<std::string> model_names();
/// Builds `options.name`; ConfigError naming `model.name` and the known names otherwise.
std::shared_ptr<Model> make_model(const ModelOptions& options);

/// Model options from a `model:`-shaped YAML map found at `key` (`model` in a checkpoint's
/// config, `distill.teacher.model` in a recipe). ConfigError naming the full key
/// (`<key>.<name>`) of every unknown or ill-typed entry, or `key` itself when `node` is
/// not a map.
ModelOptions read_model_options(const YAML::Node& node, const std::string& key);

/// Number of parameters (trainable or all).
int64_t count_parameters(const torch::nn::Module& module, bool trainable_only = false);

/// Named parameters, then named buffers: the keys of PyTorch's state_dict() for the same module.
std::vector<std::pair<std::string, torch::Tensor>> named_state(const torch::nn::Module& module);

}  // namespace retort::models

namespace retort::config {

/// A model's options as a config value (distill.teacher.model): the keys of `model:`.
template <>
struct Codec<models::ModelOptions> {
  static std::string type_name() { return "model options"; }
  static models::ModelOptions decode(const YAML::Node& node) { return models::read_model_options(node, ""); }
  static YAML::Node encode(const models::ModelOptions& options) { return encode_options(options); }
};

}  // namespace retort::config
