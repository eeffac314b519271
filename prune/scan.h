#pragma once
/// Sensitivity scan: each layer pruned alone at several sparsities, the accuracy measured
/// each time, and per layer the largest sparsity whose accuracy drop stays within a bound.
///   auto r = prune::scan(*model, options, [&](models::Model& m) { return accuracy(m); });
///   std::cout << prune::format_scan(r) << prune::suggested_recipe(r, options);
/// The drops of single layers do not add up exactly when several are pruned together:
/// the suggestion is a starting point, to be checked by pruning and evaluating.
#include <functional>
#include <string>
#include <vector>

#include "models/model.h"
#include "prune/masks.h"
#include "prune/options.h"

namespace retort::prune {

struct ScanRow {
  std::string layer;
  std::vector<double> accuracy;  ///< one per ScanResult::sparsities (empty when not applicable)
  double suggested = 0.0;        ///< largest scanned sparsity within max_drop; 0: leave dense
  std::string note;              ///< why the method does not apply to the layer ("" when it does)
};

struct ScanResult {
  std::string method;
  double baseline = 0.0;          ///< accuracy with nothing (more) pruned
  std::vector<double> sparsities; ///< the columns (2:4: just 0.5)
  std::vector<ScanRow> rows;      ///< layers not in prune.skip, in model order
  double max_drop = 0.0;          ///< accuracy points
  std::vector<std::string> skip;  ///< prune.skip of the scan
};

/// Accuracy in [0, 1] of the model as it is now (eval mode is the evaluator's business).
using Evaluator = std::function<double(models::Model&)>;

/// Runs the scan. The model's weights are restored after every trial (and on error).
/// `existing` masks (an already pruned model) stay applied throughout.
ScanResult scan(models::Model& model, const PruneOptions& options, const Evaluator& evaluate,
                const Masks& existing = {});

/// The accuracy table (Markdown), drops in points relative to the baseline.
std::string format_scan(const ScanResult& result);
/// The suggestion as recipe lines to paste into a `prune:` section.
std::string suggested_recipe(const ScanResult& result);

}  // namespace retort::prune
