#include "prune/options.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/text.h"

namespace retort::prune {
namespace {

const std::vector<std::pair<std::string, Method>>& methods() {
  static const std::vector<std::pair<std::string, Method>> m = {{"magnitude", Method::kMagnitude},
                                                                {"global_magnitude", Method::kGlobalMagnitude},
                                                                {"l1_structured", Method::kL1Structured},
                                                                {"l2_structured", Method::kL2Structured},
                                                                {"2:4", Method::kSemi24}};
  return m;
}

std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

void check_fraction(double v, const std::string& key) {
  if (!std::isfinite(v) || v < 0.0 || v >= 1.0)
    throw ConfigError(key + ": sparsity must be in [0, 1) (a fraction of the layer), got " + number(v));
}

void flatten(const YAML::Node& node, const std::string& prefix, std::map<std::string, double>& out) {
  for (const auto& kv : node) {
    const std::string key = prefix.empty() ? kv.first.as<std::string>() : prefix + "." + kv.first.as<std::string>();
    if (kv.second.IsMap()) {
      flatten(kv.second, key, out);
    } else if (kv.second.IsScalar()) {
      double v = 0;
      try {
        v = kv.second.as<double>();
      } catch (const YAML::Exception&) {
        throw ConfigError("prune.layers." + key + ": expected a sparsity (a number in [0, 1)), got '" +
                          kv.second.Scalar() + "'");
      }
      check_fraction(v, "prune.layers." + key);
      out[key] = v;
    } else {
      throw ConfigError("prune.layers." + key + ": expected a sparsity (a number in [0, 1)), got a list or null");
    }
  }
}

}  // namespace

Method parse_method(const std::string& name) {
  for (const auto& [n, m] : methods())
    if (n == name) return m;
  std::vector<std::string> known;
  for (const auto& [n, m] : methods()) known.push_back(n);
  throw ConfigError("prune.method: unknown method '" + name + "' (known: " + join(known) + ")");
}

std::string method_name(Method m) {
  for (const auto& [n, mm] : methods())
    if (mm == m) return n;
  return "?";
}

bool is_structured(Method m) { return m == Method::kL1Structured || m == Method::kL2Structured; }

void GptPruneOptions::declare(config::Fields<GptPruneOptions>& f) {
  f.add("dim", &GptPruneOptions::dim, "gpt: embedding channels to keep (0: all)").min(0);
  f.add("depth", &GptPruneOptions::depth, "gpt: layers to keep, by block influence (0: all)").min(0);
  f.add("heads", &GptPruneOptions::heads, "gpt: attention heads to keep in each layer (0: all)").min(0);
  f.add("mlp_dim", &GptPruneOptions::mlp_dim, "gpt: MLP neurons to keep in each layer (0: all)").min(0);
  f.add("calibration", &GptPruneOptions::calibration,
        "gpt: the first training windows whose activations rank channels, heads, neurons and layers")
      .min(1);
}

void PruneOptions::declare(config::Fields<PruneOptions>& f) {
  f.add("method", &PruneOptions::method,
        "magnitude | global_magnitude (unstructured), l1_structured | l2_structured (output channels), 2:4")
      .one_of({"magnitude", "global_magnitude", "l1_structured", "l2_structured", "2:4"});
  f.add("sparsity", &PruneOptions::sparsity,
        "fraction of each layer's weights (unstructured) or output channels (structured) to prune")
      .min(0)
      .less_than(1);
  f.add("skip", &PruneOptions::skip, "layers left dense (the classifier head by default)");
  f.add("layers", &PruneOptions::layers, "per-layer sparsity overrides, e.g. {stage0.conv0: 0.2}");
  f.add("compact", &PruneOptions::compact, "structured: remove pruned channels, writing a smaller dense model");
  f.add("round_to", &PruneOptions::round_to,
        "structured: round each layer's kept channels down to a multiple of this (16: AVX-512 / tensor-core blocks)")
      .min(1);
  f.add("scan_samples", &PruneOptions::scan_samples, "--scan: held-out samples (the last of the train split)").min(1);
  f.add("scan_sparsities", &PruneOptions::scan_sparsities, "--scan: sparsities tried on each layer alone")
      .min(0)
      .less_than(1);
  f.add("max_drop", &PruneOptions::max_drop, "--scan: accuracy points a layer may lose at its suggested sparsity")
      .min(0);
  f.add("from", &PruneOptions::from, "train: fine-tune this pruned run or checkpoint (weights and masks)");
  f.add_section("gpt", &PruneOptions::gpt);
}

void PruneOptions::validate() const {
  const Method m = parse_method(method);
  check_fraction(sparsity, "prune.sparsity");
  for (double s : scan_sparsities) check_fraction(s, "prune.scan_sparsities");
  if (scan_sparsities.empty()) throw ConfigError("prune.scan_sparsities: expected at least one sparsity, got []");
  if (scan_samples < 1) throw ConfigError("prune.scan_samples: expected >= 1, got " + std::to_string(scan_samples));
  if (!std::isfinite(max_drop) || max_drop < 0)
    throw ConfigError("prune.max_drop: expected accuracy points >= 0, got " + number(max_drop));
  if (compact && !is_structured(m))
    throw ConfigError("prune.compact: only structured pruning (l1_structured, l2_structured) removes whole "
                      "channels; prune.method=" + method + " leaves the layers their size");
  layer_sparsities();
  const std::pair<const char*, int64_t> gpt_targets[] = {
      {"dim", gpt.dim}, {"depth", gpt.depth}, {"heads", gpt.heads}, {"mlp_dim", gpt.mlp_dim}};
  for (const auto& [key, value] : gpt_targets)
    if (value < 0)
      throw ConfigError(std::string("prune.gpt.") + key + ": expected a size >= 1 to keep (0: all), got " +
                        std::to_string(value));
  if (gpt.calibration < 1)
    throw ConfigError("prune.gpt.calibration: expected >= 1 training windows, got " + std::to_string(gpt.calibration));
}

std::map<std::string, double> PruneOptions::layer_sparsities() const {
  std::map<std::string, double> out;
  if (!layers || layers.IsNull()) return out;
  if (!layers.IsMap())
    throw ConfigError("prune.layers: expected a map {layer: sparsity}, e.g. {stage0.conv0: 0.2}");
  flatten(layers, "", out);
  return out;
}

}  // namespace retort::prune
