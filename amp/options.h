#pragma once
/// Mixed-precision settings as read from the recipe's `amp:` section, typed once when the
/// config is read (enums, a dtype, the scaler's options).
///
///   amp::AmpOptions opts;  opts.mode = amp::AmpMode::kMaster;  opts.dtype = torch::kBFloat16;
///   amp::validate(opts, torch::kCPU);                    // ConfigError on bad values
///   amp::GradScaler scaler(amp::scaler_options(opts), comm);
///   amp::Autocast guard(opts, torch::kCPU);
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "amp/grad_scaler.h"
#include "config/config.h"

namespace retort::amp {

enum class AmpMode {
  kOff,       ///< fp32 everywhere
  kAutocast,  ///< fp32 weights; ops cast their inputs per amp/policy.h
  kMaster,    ///< weights in the low dtype, fp32 master copy stepped by the optimizer
};

/// Dynamic loss scaling: on for fp16 and off for bf16 (whose range is fp32's), or forced.
enum class LossScaling { kAuto, kOn, kOff };

struct AmpOptions {
  AmpMode mode = AmpMode::kOff;
  torch::ScalarType dtype = torch::kBFloat16;  ///< bf16 | fp16 (fp16 on CUDA only)
  LossScaling loss_scaling = LossScaling::kAuto;
  /// master mode: keep normalization layers' parameters in fp32 (Apex O2's
  /// keep_batchnorm_fp32); their statistics are computed in fp32 anyway.
  bool keep_norm_fp32 = true;
  /// amp.scaler.*; `enabled` is not a key: scaler_options() resolves it from mode,
  /// dtype and loss_scaling.
  GradScalerOptions scaler;
  static void declare(config::Fields<AmpOptions>& f);
};

/// Checks that the dtype runs on `device` (fp16 needs CUDA) and the scaler's values.
void validate(const AmpOptions& options, torch::DeviceType device);
/// options.scaler with `enabled` resolved from mode, dtype and loss_scaling.
GradScalerOptions scaler_options(const AmpOptions& options);

}  // namespace retort::amp

namespace retort::config {

template <>
struct EnumNames<amp::AmpMode> {
  static std::vector<std::pair<std::string, amp::AmpMode>> list() {
    return {{"off", amp::AmpMode::kOff}, {"autocast", amp::AmpMode::kAutocast}, {"master", amp::AmpMode::kMaster}};
  }
};

template <>
struct EnumNames<amp::LossScaling> {
  static std::vector<std::pair<std::string, amp::LossScaling>> list() {
    return {{"auto", amp::LossScaling::kAuto}, {"on", amp::LossScaling::kOn}, {"off", amp::LossScaling::kOff}};
  }
};

/// The low-precision dtypes amp.dtype names (with PyTorch's spellings as aliases).
template <>
struct EnumNames<c10::ScalarType> {
  static std::vector<std::pair<std::string, c10::ScalarType>> list() {
    return {{"bf16", torch::kBFloat16}, {"fp16", torch::kHalf},     {"bfloat16", torch::kBFloat16},
            {"float16", torch::kHalf},  {"half", torch::kHalf}};
  }
};

}  // namespace retort::config
