#pragma once
/// Mixed-precision settings as read from the recipe's `amp:` section, and the helpers that
/// turn them into typed values.
///
///   amp::AmpOptions opts;  opts.mode = "master";  opts.dtype = "bf16";
///   amp::validate(opts, torch::kCPU);                    // ConfigError on bad values
///   amp::GradScaler scaler(amp::scaler_options(opts), comm);
///   amp::Autocast guard(opts, torch::kCPU);
#include <torch/torch.h>

#include <string>

#include "amp/grad_scaler.h"
#include "config/config.h"

namespace retort::amp {

enum class AmpMode {
  kOff,       ///< fp32 everywhere
  kAutocast,  ///< fp32 weights; ops cast their inputs per amp/policy.h
  kMaster,    ///< weights in the low dtype, fp32 master copy stepped by the optimizer
};

struct AmpOptions {
  std::string mode = "off";           ///< off | autocast | master
  std::string dtype = "bf16";         ///< bf16 | fp16 (fp16 on CUDA only)
  /// Dynamic loss scaling: auto (on for fp16, off for bf16, whose range is fp32's) | on | off.
  std::string loss_scaling = "auto";
  /// master mode: keep normalization layers' parameters in fp32 (Apex O2's
  /// keep_batchnorm_fp32); their statistics are computed in fp32 anyway.
  bool keep_norm_fp32 = true;
  // Dynamic loss scaling (keys amp.scaler.*); scaler_options() turns them into
  // GradScalerOptions, with `enabled` resolved from mode and loss_scaling.
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  int64_t hysteresis = 1;
  double min_scale = 1.0;
  double max_scale = 16777216.0;  // 2^24
  int64_t max_consecutive_skips = 100;
  static void declare(config::Fields<AmpOptions>& f);
};

/// "off" | "autocast" | "master"; ConfigError naming amp.mode otherwise.
AmpMode parse_mode(const std::string& mode);
/// "bf16" | "fp16" (also "bfloat16", "float16", "half"); ConfigError naming amp.dtype otherwise.
torch::ScalarType parse_dtype(const std::string& dtype);
/// Checks every field, and that the dtype runs on `device` (fp16 needs CUDA).
void validate(const AmpOptions& options, torch::DeviceType device);
/// options.scaler with `enabled` resolved from mode and loss_scaling.
GradScalerOptions scaler_options(const AmpOptions& options);

}  // namespace retort::amp
