#pragma once
/// Dynamic loss scaling for fp16 (and optionally bf16) training, agreeing on inf/NaN across
/// ranks through a launch::Communicator, so that every rank skips the same steps.
///
///   amp::GradScaler scaler(amp::GradScalerOptions().growth_interval(1000), comm);
///   scaler.set_named_parameters(model->named_parameters());    // for error messages
///   ...
///   scaler.record_terms({{"ce", ce}, {"mse.0", m0}, {"kl", kl}});
///   scaler.scale(loss).backward();
///   scaler.unscale(optimizer);                 // before gradient clipping
///   clip_grad_norm(...);
///   bool stepped = scaler.step(optimizer);     // skipped on inf/NaN
///   scaler.update();                           // grow / back off; may throw (see options)
///
/// Scale schedule (PyTorch's, plus Megatron-style hysteresis and caps): after
/// growth_interval clean steps in a row the scale grows by growth_factor (at most
/// max_scale); a step with inf/NaN gradients is skipped, and once `hysteresis` such steps
/// have been seen since the last growth, the scale backs off by backoff_factor (at least
/// min_scale). After max_consecutive_skips skipped steps in a row update() throws an
/// Error naming the loss terms and parameters that first went non-finite.
///
/// Cost per step: one fused unscale + finiteness pass (CUDA: PyTorch's
/// _amp_foreach_non_finite_check_and_unscale_; CPU: _foreach_mul_ and one reduction), one
/// all-reduce(MAX) of a single float, and one host sync to decide step or skip.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "config/config.h"

namespace retort::launch {
class Communicator;
}

namespace retort::amp {

struct GradScalerOptions {
  /// false: every method passes through (scale 1, step always steps).
  TORCH_ARG(bool, enabled) = true;
  TORCH_ARG(double, init_scale) = 65536.0;
  TORCH_ARG(double, growth_factor) = 2.0;
  TORCH_ARG(double, backoff_factor) = 0.5;
  TORCH_ARG(int64_t, growth_interval) = 2000;
  /// Overflowing steps tolerated (skipped, scale kept) before backing off; 1 = at once.
  TORCH_ARG(int64_t, hysteresis) = 1;
  TORCH_ARG(double, min_scale) = 1.0;
  TORCH_ARG(double, max_scale) = 16777216.0;  // 2^24
  /// Throw after this many skipped steps in a row (the run is diverging, not overflowing);
  /// 0 = never.
  TORCH_ARG(int64_t, max_consecutive_skips) = 100;

 public:  // TORCH_ARG leaves the access at private
  /// ConfigError naming amp.scaler.<field> for a value out of range.
  void validate() const;
  /// The keys amp.scaler.* (all but `enabled`, which amp.mode and amp.loss_scaling decide).
  static void declare(config::Fields<GradScalerOptions>& f);
};

class GradScaler {
 public:
  using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

  /// comm == nullptr: a world of one process.
  explicit GradScaler(GradScalerOptions options = {}, std::shared_ptr<launch::Communicator> comm = nullptr);

  /// Names used in the max_consecutive_skips error (the tensors the optimizer steps on:
  /// the model's parameters, or MasterWeights' masters).
  void set_named_parameters(const NamedTensors& params);
  /// From module->named_parameters() (a torch::OrderedDict).
  template <typename Dict, typename = decltype(std::declval<const Dict&>().begin()->key())>
  void set_named_parameters(const Dict& params) {
    NamedTensors v;
    for (const auto& item : params) v.emplace_back(item.key(), item.value());
    set_named_parameters(v);
  }

  /// The loss terms of this step, kept (detached) until update() for the skip diagnosis.
  void record_terms(const NamedTensors& terms);

  /// loss * scale (loss itself when disabled).
  torch::Tensor scale(const torch::Tensor& loss) const;
  /// The current scale (1 when disabled).
  double scale() const;

  /// Divides the gradients by the scale and records whether any is inf/NaN on any rank
  /// (one all-reduce). A parameter already unscaled in this step is left alone, so a
  /// second call is a no-op.
  void unscale(torch::optim::Optimizer& optimizer);
  void unscale(const std::vector<torch::Tensor>& params);

  /// Unscales what is still scaled, then calls optimizer.step() unless a gradient was
  /// inf/NaN. Returns whether it stepped.
  bool step(torch::optim::Optimizer& optimizer);

  /// Ends the step: adjusts the scale and the counters. Throws Error when called before
  /// any unscale()/step() of this step, or after max_consecutive_skips skips in a row.
  void update();

  bool enabled() const { return options_.enabled(); }
  const GradScalerOptions& options() const { return options_; }
  /// Whether the step in progress found inf/NaN (after unscale/step).
  bool found_inf() const { return found_inf_; }
  int64_t skipped_steps() const { return skipped_total_; }
  /// What overflowed at the first step of the current run of skipped steps (the loss
  /// terms that went non-finite, or the first parameters whose gradients did), after
  /// update(); "" once a step succeeds. The trainer writes it to metrics.jsonl.
  const std::string& skip_report() const { return first_skip_report_; }
  int64_t consecutive_skips() const { return consecutive_skips_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  int64_t hysteresis_tracker() const { return hysteresis_tracker_; }

  /// Keys: scale (fp64), growth_tracker, hysteresis_tracker, skipped_steps,
  /// consecutive_skips (int64). Empty when disabled.
  std::map<std::string, torch::Tensor> state_dict() const;
  /// Exact restore; CheckpointError naming the key when one is missing or malformed.
  /// Ignored when disabled.
  void load_state_dict(const std::map<std::string, torch::Tensor>& state);

 private:
  void unscale_grads(const std::vector<torch::Tensor>& params);
  void diagnose(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads);
  std::string param_name(const torch::Tensor& p) const;

  GradScalerOptions options_;
  std::shared_ptr<launch::Communicator> comm_;

  double scale_;
  int64_t growth_tracker_ = 0;
  int64_t hysteresis_tracker_;
  int64_t skipped_total_ = 0;
  int64_t consecutive_skips_ = 0;

  // Per step.
  bool checked_ = false;  // some unscale happened in this step
  bool found_inf_ = false;
  std::unordered_set<const c10::TensorImpl*> unscaled_;
  NamedTensors terms_;

  // Diagnosis of the first skipped step of the current run of skips.
  std::string first_skip_report_;
  int64_t first_skip_update_ = -1;
  int64_t updates_ = 0;

  std::unordered_map<const c10::TensorImpl*, std::string> names_;
};

}  // namespace retort::amp
