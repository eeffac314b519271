#pragma once
/// What a recipe's `prune:` section says.
///   prune:
///     method: l1_structured   # magnitude | global_magnitude | l1_structured | l2_structured | 2:4
///     sparsity: 0.4           # fraction of weights (unstructured) or output channels (structured)
///     skip: [head]            # layers left dense
///     layers: {stage0.conv0: 0.2}   # per-layer sparsity overrides
///     compact: false          # structured: remove pruned channels (a smaller dense model)
///     scan_samples: 2000      # --scan: held-out samples (the last ones of the train split)
///     scan_sparsities: [0.2, 0.4, 0.6, 0.8]
///     max_drop: 1.0           # --scan: accuracy points a layer may lose at its suggested sparsity
///     from: ""                # train: start from this pruned run (weights + masks)
///     gpt: {dim: 64, depth: 4, heads: 2, mlp_dim: 256}   # a gpt: the smaller dense gpt to make
///
///   auto opts = reader.section<prune::PruneOptions>("prune");
///   opts.validate();                       // ConfigError naming the key
///   auto plan = opts.layer_sparsities();   // {"stage0.conv0": 0.2}
#include <map>
#include <string>
#include <vector>

#include "config/config.h"

namespace retort::prune {

enum class Method {
  kMagnitude,        ///< unstructured: the smallest |w| of each layer
  kGlobalMagnitude,  ///< unstructured: the smallest |w| over all pruned layers together
  kL1Structured,     ///< whole output channels / neurons with the smallest L1 norm
  kL2Structured,     ///< the same with the L2 norm
  kSemi24,           ///< 2:4: in each group of 4 weights along the input dim, the 2 smallest
};

/// "magnitude" | "global_magnitude" | "l1_structured" | "l2_structured" | "2:4"; ConfigError
/// naming prune.method otherwise.
Method parse_method(const std::string& name);
std::string method_name(Method m);
bool is_structured(Method m);

/// `prune.gpt`: a gpt language model pruned into a smaller dense gpt (prune/gpt_prune.h):
/// the embedding channels, layers, heads per layer and MLP neurons per layer that rank highest
/// on calibration windows are kept. 0 keeps all of that dimension; any other value switches
/// `retort prune` from prune.method to this.
struct GptPruneOptions {
  int64_t dim = 0;      ///< embedding channels kept (model.dim of the result)
  int64_t depth = 0;    ///< layers kept
  int64_t heads = 0;    ///< heads kept in every kept layer; each keeps the model's head width
  int64_t mlp_dim = 0;  ///< MLP neurons kept in every kept layer
  int64_t calibration = 64;  ///< the first training windows the activations are measured on

  bool any() const { return dim != 0 || depth != 0 || heads != 0 || mlp_dim != 0; }
  static void declare(config::Fields<GptPruneOptions>& f);
};

struct PruneOptions {
  std::string method = "magnitude";
  double sparsity = 0.5;
  std::vector<std::string> skip = {"head"};
  /// Per-layer sparsity overrides: a map {layer: sparsity}. Layer names contain dots, so a
  /// command-line override `+prune.layers.stage0.conv0=0.2` arrives as nested maps; both
  /// spellings are accepted (layer_sparsities() flattens them).
  YAML::Node layers = YAML::Node(YAML::NodeType::Map);
  bool compact = false;
  /// Structured: round each layer's kept channels down to a multiple of this (1: off).
  /// Kernels block channels by 8 or 16 (AVX-512, tensor cores): 20 kept channels run
  /// about as slowly as 24, 16 run much faster (bench/reference/channel_latency.py).
  int64_t round_to = 1;
  int64_t scan_samples = 2000;
  std::vector<double> scan_sparsities = {0.2, 0.4, 0.6, 0.8};
  double max_drop = 1.0;  ///< accuracy points
  std::string from;       ///< a pruned run or checkpoint directory to fine-tune
  GptPruneOptions gpt;

  static void declare(config::Fields<PruneOptions>& f);
  /// ConfigError naming the key: unknown method, a sparsity outside [0, 1) (global or per
  /// layer), an empty scan list, max_drop < 0, compact with an unstructured method.
  void validate() const;
  /// prune.layers flattened to {"stage0.conv0": 0.2}; ConfigError for a non-number.
  std::map<std::string, double> layer_sparsities() const;
};

}  // namespace retort::prune
