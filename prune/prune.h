#pragma once
/// Pruning: masks, criteria (unstructured magnitude, structured L1/L2, 2:4), sensitivity
/// scan, compaction into a smaller dense model, the per-layer sparsity report, and a gpt
/// pruned by activation importance into a smaller dense gpt (prune/gpt_prune.h).
/// Fine-tuning with masks lives one floor up, in trainer::PrunedTask.
///   auto masks = prune::compute_masks(*model, options);
///   masks.apply(*model);
///   auto small = prune::compact(*model, masks);   // structured methods
#include "prune/compact.h"
#include "prune/gpt_prune.h"
#include "prune/layers.h"
#include "prune/masks.h"
#include "prune/methods.h"
#include "prune/options.h"
#include "prune/report.h"
#include "prune/scan.h"
