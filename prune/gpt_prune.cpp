#include "prune/gpt_prune.h"

#include <iomanip>
#include <sstream>

#include "core/error.h"
#include "prune/methods.h"

namespace retort::prune {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

/// Eval mode and a probe on the gpt for the scope; neither left behind, however it ends.
class Probing {
 public:
  Probing(models::Gpt& gpt, models::GptProbe probe) : gpt_(gpt), was_training_(gpt.is_training()) {
    gpt_.eval();
    gpt_.set_probe(std::move(probe));
  }
  ~Probing() {
    gpt_.set_probe(nullptr);
    gpt_.train(was_training_);
  }
  Probing(const Probing&) = delete;
  Probing& operator=(const Probing&) = delete;

 private:
  models::Gpt& gpt_;
  bool was_training_;
};

/// The `keep` highest of a 1-D tensor of scores, as ascending indices.
torch::Tensor top(const torch::Tensor& scores, int64_t keep) {
  auto kept = torch::ones({scores.size(0)}, torch::kBool);
  const int64_t drop = scores.size(0) - keep;
  if (drop > 0) kept.index_fill_(0, smallest_indices(scores, drop), false);
  return kept.nonzero().flatten();
}

/// A target of prune.gpt, 0 meaning all of `size`.
int64_t target_or_all(int64_t target, int64_t size) { return target > 0 ? target : size; }

std::string index_list(const torch::Tensor& indices) {
  std::ostringstream os;
  for (int64_t i = 0; i < indices.numel(); ++i) os << (i ? " " : "") << indices[i].item<int64_t>();
  return os.str();
}

}  // namespace

GptImportance gpt_importance(models::Gpt& gpt, const std::vector<torch::Tensor>& batches) {
  if (batches.empty()) throw DataError("prune.gpt.calibration: no calibration windows to measure the gpt on");
  const auto& o = gpt.options();
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  GptImportance sum;
  sum.channels = torch::zeros({o.dim}, f64);
  sum.heads = torch::zeros({o.depth, o.heads}, f64);
  sum.neurons = torch::zeros({o.depth, gpt.mlp_width()}, f64);
  sum.layers = torch::zeros({o.depth}, f64);
  std::vector<torch::Tensor> block_inputs(static_cast<size_t>(o.depth));
  auto probe = [&](models::GptSite site, int64_t layer, const torch::Tensor& activation) {
    auto a = activation.detach().to(torch::kCPU, torch::kFloat64);
    switch (site) {
      case models::GptSite::kBlockInput: block_inputs[static_cast<size_t>(layer)] = a; break;
      case models::GptSite::kLn1:
      case models::GptSite::kLn2:
      case models::GptSite::kLnF: sum.channels += a.abs().sum(std::vector<int64_t>{0, 1}); break;
      case models::GptSite::kHeads:  // [B, H, T, Dh] -> [H]
        sum.heads[layer] += a.pow(2).sum(-1).sqrt().sum(std::vector<int64_t>{0, 2});
        break;
      case models::GptSite::kMlpHidden: sum.neurons[layer] += a.abs().sum(std::vector<int64_t>{0, 1}); break;
    }
  };
  Probing probing(gpt, probe);
  torch::NoGradGuard no_grad;
  for (const auto& ids : batches) {
    const auto out = gpt.forward(ids);
    for (size_t l = 0; l < out.hidden.size(); ++l) {
      auto output = out.hidden[l].detach().to(torch::kCPU, torch::kFloat64);
      sum.layers[static_cast<int64_t>(l)] += (1 - torch::cosine_similarity(block_inputs[l], output, -1)).sum();
    }
    sum.tokens += ids.numel();
  }
  const double n = static_cast<double>(sum.tokens);
  for (auto* t : {&sum.channels, &sum.heads, &sum.neurons, &sum.layers}) *t /= n;
  return sum;
}

GptSelection select_all(const models::Gpt& gpt) {
  const auto& o = gpt.options();
  GptSelection s;
  s.channels = torch::arange(o.dim, torch::kLong);
  for (int64_t l = 0; l < o.depth; ++l) {
    s.layers.push_back(l);
    s.heads.push_back(torch::arange(o.heads, torch::kLong));
    s.neurons.push_back(torch::arange(gpt.mlp_width(), torch::kLong));
  }
  return s;
}

void check_gpt_targets(const models::Gpt& gpt, const GptPruneOptions& targets) {
  const auto& o = gpt.options();
  struct Target {
    const char* key;
    int64_t value, size;
    const char* what;
  };
  const Target all[] = {{"dim", targets.dim, o.dim, "embedding channels (model.dim)"},
                        {"depth", targets.depth, o.depth, "layers (model.depth)"},
                        {"heads", targets.heads, o.heads, "heads per layer (model.heads)"},
                        {"mlp_dim", targets.mlp_dim, gpt.mlp_width(), "MLP neurons per layer (model.mlp_dim)"}};
  for (const auto& t : all)
    if (t.value < 0 || t.value > t.size)
      throw ConfigError(std::string("prune.gpt.") + t.key + ": " + str(t.value) + " is not a size the model can be " +
                        "pruned to; it has " + str(t.size) + " " + t.what + ", expected 1.." + str(t.size) +
                        " (0 keeps all)");
}

GptSelection select_gpt(const models::Gpt& gpt, const GptImportance& importance, const GptPruneOptions& targets) {
  check_gpt_targets(gpt, targets);
  const auto& o = gpt.options();
  GptSelection s;
  s.channels = top(importance.channels, target_or_all(targets.dim, o.dim));
  const auto layers = top(importance.layers, target_or_all(targets.depth, o.depth));
  for (int64_t i = 0; i < layers.numel(); ++i) {
    const int64_t l = layers[i].item<int64_t>();
    s.layers.push_back(l);
    s.heads.push_back(top(importance.heads[l], target_or_all(targets.heads, o.heads)));
    s.neurons.push_back(top(importance.neurons[l], target_or_all(targets.mlp_dim, gpt.mlp_width())));
  }
  return s;
}

std::string format_gpt_selection(const GptImportance& importance, const GptSelection& keep) {
  std::ostringstream os;
  os << std::setprecision(4) << "importance on " << importance.tokens << " calibration tokens\n\n"
     << "| layer | block influence | kept | heads kept | MLP neurons kept |\n|---|---:|---|---|---:|\n";
  size_t k = 0;
  for (int64_t l = 0; l < importance.layers.size(0); ++l) {
    const bool kept = k < keep.layers.size() && keep.layers[k] == l;
    os << "| " << l << " | " << importance.layers[l].item<double>() << " | " << (kept ? "yes" : "no") << " | "
       << (kept ? index_list(keep.heads[k]) : "-") << " | "
       << (kept ? str(keep.neurons[k].numel()) + " of " + str(importance.neurons.size(1)) : "-") << " |\n";
    if (kept) ++k;
  }
  os << "\nembedding channels kept: " << keep.channels.numel() << " of " << importance.channels.size(0) << "\n";
  return os.str();
}

}  // namespace retort::prune
