#include "core/text.h"
#include "prune/report.h"

#include <iomanip>
#include <sstream>

#include "prune/layers.h"

namespace retort::prune {

std::vector<LayerSparsity> sparsity_report(const models::Model& model, const Masks& masks) {
  std::vector<LayerSparsity> rows;
  for (const auto& l : prunable_layers(model)) {
    LayerSparsity r;
    r.layer = l.name;
    r.kind = l.kind;
    r.shape = l.shape;
    r.channels = l.out;
    r.weights = 1;
    for (auto d : l.shape) r.weights *= d;
    if (masks.contains(l.weight)) {
      const auto& m = masks.at(l.weight);
      r.pruned = m.numel() - m.sum().item<int64_t>();
      r.channels_removed = m.flatten(1).any(1).logical_not().sum().item<int64_t>();
    }
    rows.push_back(r);
  }
  return rows;
}

std::string format_report(const std::vector<LayerSparsity>& rows, const models::Model& model, const Masks& masks) {
  std::ostringstream os;
  os << "| layer | shape | weights | pruned | sparsity | channels kept |\n"
     << "|---|---|---:|---:|---:|---:|\n";
  for (const auto& r : rows) {
    os << "| " << r.layer << " | " << join(r.shape, [](int64_t d) { return std::to_string(d); }, "x") << " | " << r.weights << " | " << r.pruned << " | " << std::fixed
       << std::setprecision(1) << 100.0 * r.sparsity() << " % | " << (r.channels - r.channels_removed) << "/"
       << r.channels << " |\n";
  }
  const int64_t total = models::count_parameters(model);
  const int64_t pruned = masks.pruned();
  os << "total: " << pruned << " of " << total << " parameters pruned (" << std::fixed << std::setprecision(1)
     << (total ? 100.0 * static_cast<double>(pruned) / static_cast<double>(total) : 0.0)
     << " %), biases and norms included\n";
  return os.str();
}

}  // namespace retort::prune
