#include "core/text.h"
#include "prune/scan.h"

#include <iomanip>
#include <set>
#include <sstream>

#include "prune/layers.h"
#include "prune/methods.h"

namespace retort::prune {
namespace {

/// Saves the parameters a trial will mask and puts them back when it ends, also when the
/// evaluator throws.
class Restore {
 public:
  Restore(models::Model& model, const Masks& masks) : params_(model.named_parameters()) {
    torch::NoGradGuard no_grad;
    for (const auto& kv : masks.tensors()) saved_.emplace_back(kv.first, params_[kv.first].detach().clone());
  }
  ~Restore() {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : saved_) params_[name].copy_(t);
  }
  Restore(const Restore&) = delete;
  Restore& operator=(const Restore&) = delete;

 private:
  torch::OrderedDict<std::string, torch::Tensor> params_;
  std::vector<std::pair<std::string, torch::Tensor>> saved_;
};

std::string fixed(double v, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

ScanResult scan(models::Model& model, const PruneOptions& options, const Evaluator& evaluate, const Masks& existing) {
  options.validate();
  const Method method = parse_method(options.method);
  const auto layers = prunable_layers(model);
  // Unknown names in prune.skip fail here like they do when pruning.
  PruneOptions check = options;
  check.layers = YAML::Node(YAML::NodeType::Map);
  check.sparsity = 0.0;
  check.method = "magnitude";  // fits every layer: only names are checked here
  check.compact = false;
  layer_plan(layers, check);
  const std::set<std::string> skip(options.skip.begin(), options.skip.end());

  ScanResult r;
  r.method = options.method;
  r.max_drop = options.max_drop;
  r.skip = options.skip;
  r.sparsities = method == Method::kSemi24 ? std::vector<double>{0.5} : options.scan_sparsities;
  if (!existing.empty()) existing.apply(model);
  r.baseline = evaluate(model);
  for (const auto& l : layers) {
    if (skip.count(l.name)) continue;
    ScanRow row;
    row.layer = l.name;
    row.note = unfit_reason(l, method);
    if (row.note.empty()) {
      for (double s : r.sparsities) {
        const Masks masks = layer_masks(model, l.name, method, s, existing);
        Restore restore(model, masks);
        masks.apply(model);
        const double acc = evaluate(model);
        row.accuracy.push_back(acc);
        if (100.0 * (r.baseline - acc) <= options.max_drop + 1e-9) row.suggested = std::max(row.suggested, s);
      }
    }
    r.rows.push_back(row);
  }
  return r;
}

std::string format_scan(const ScanResult& r) {
  std::ostringstream os;
  os << "sensitivity (" << r.method << "): accuracy % with one layer pruned; baseline " << fixed(100 * r.baseline, 2)
     << " %\n\n| layer |";
  for (double s : r.sparsities) os << " " << fixed(100 * s, 0) << " % |";
  os << " suggested |\n|---|";
  for (size_t i = 0; i < r.sparsities.size(); ++i) os << "---:|";
  os << "---:|\n";
  for (const auto& row : r.rows) {
    os << "| " << row.layer << " |";
    if (!row.note.empty()) {
      for (size_t i = 0; i < r.sparsities.size(); ++i) os << " - |";
      os << " n/a: " << row.note << " |\n";
      continue;
    }
    for (double a : row.accuracy)
      os << " " << fixed(100 * a, 2) << " (" << (a > r.baseline ? "+" : "") << fixed(100 * (a - r.baseline), 2) << ") |";
    os << " " << number(row.suggested) << " |\n";
  }
  return os.str();
}

std::string suggested_recipe(const ScanResult& r) {
  std::ostringstream os;
  os << "# suggested: the largest scanned sparsity per layer losing at most " << number(r.max_drop)
     << " accuracy point(s) alone;\n# layers pruned together lose more: prune, then evaluate.\nprune:\n  method: "
     << r.method << "\n";
  std::vector<std::string> dense;
  std::ostringstream layers;
  for (const auto& row : r.rows) {
    if (row.note.empty() && row.suggested > 0) layers << "    " << row.layer << ": " << number(row.suggested) << "\n";
    else dense.push_back(row.layer);
  }
  if (r.method == "2:4") {
    // 2:4 is all or nothing per layer: the layers that lose too much go into skip.
    std::vector<std::string> skip = r.skip;
    skip.insert(skip.end(), dense.begin(), dense.end());
    os << "  skip: [" << join(skip) << "]\n";
    return os.str();
  }
  os << "  sparsity: 0.0  # layers not listed stay dense\n  layers:\n" << layers.str();
  if (layers.str().empty()) os << "    {}  # no layer stays within the bound\n";
  return os.str();
}

}  // namespace retort::prune
