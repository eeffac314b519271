#pragma once
/// Pruning masks: parameter name -> bool tensor of the parameter's shape, true where the
/// weight is kept. Only parameters with something pruned have a mask.
///   prune::Masks masks = prune::compute_masks(*model, options);
///   masks.apply(*model);                          // pruned weights := 0
///   auto state = masks.state_dict();              // {"mask.fc0.weight": bool tensor}
///   auto back = prune::Masks::from_state_dict(state);
#include <torch/torch.h>

#include <map>
#include <string>

#include "launch/communicator.h"

namespace retort::prune {

class Masks {
 public:
  /// Sets (replaces) the mask of `param`; any dtype, nonzero keeps. Stored as CPU bool.
  void set(const std::string& param, const torch::Tensor& keep);
  bool contains(const std::string& param) const { return masks_.count(param) > 0; }
  /// The mask of `param`; retort::Error naming it when there is none.
  const torch::Tensor& at(const std::string& param) const;
  const std::map<std::string, torch::Tensor>& tensors() const { return masks_; }
  bool empty() const { return masks_.empty(); }
  size_t size() const { return masks_.size(); }

  /// Keeps a weight only where both keep it (a parameter masked in one only keeps that mask).
  /// Error naming the parameter when shapes differ.
  void intersect(const Masks& other);
  /// Removes masks that keep everything.
  void drop_full();
  /// Number of pruned entries over all masks.
  int64_t pruned() const;

  /// Every mask must name a parameter of `module` and have its shape; CheckpointError
  /// naming `origin`, each unknown name (with the nearest parameter) and each bad shape.
  void check(const torch::nn::Module& module, const std::string& origin) const;
  /// Zeroes the pruned weights of `module` in place (outside autograd). Checks first.
  void apply(torch::nn::Module& module) const;

  /// Checkpoint state: "mask.<param>" -> bool tensor.
  std::map<std::string, torch::Tensor> state_dict() const;
  /// The "mask.*" entries of `state`; other keys are ignored.
  static Masks from_state_dict(const std::map<std::string, torch::Tensor>& state);

  /// Makes every rank hold rank `root`'s masks (the same parameter names are required on
  /// every rank: CommError otherwise). Collective: every rank must call it.
  void broadcast(launch::Communicator& comm, int root = 0);

 private:
  std::map<std::string, torch::Tensor> masks_;
};

}  // namespace retort::prune
