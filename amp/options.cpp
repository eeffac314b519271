#include "amp/options.h"

#include "core/error.h"

namespace retort::amp {

AmpMode parse_mode(const std::string& mode) {
  if (mode == "off") return AmpMode::kOff;
  if (mode == "autocast") return AmpMode::kAutocast;
  if (mode == "master") return AmpMode::kMaster;
  throw ConfigError("amp.mode: expected off, autocast or master, got '" + mode + "'");
}

torch::ScalarType parse_dtype(const std::string& dtype) {
  if (dtype == "bf16" || dtype == "bfloat16") return torch::kBFloat16;
  if (dtype == "fp16" || dtype == "float16" || dtype == "half") return torch::kHalf;
  throw ConfigError("amp.dtype: expected bf16 or fp16, got '" + dtype + "'");
}

void validate(const AmpOptions& options, torch::DeviceType device) {
  const AmpMode mode = parse_mode(options.mode);
  const torch::ScalarType dtype = parse_dtype(options.dtype);
  if (options.loss_scaling != "auto" && options.loss_scaling != "on" && options.loss_scaling != "off") {
    throw ConfigError("amp.loss_scaling: expected auto, on or off, got '" + options.loss_scaling + "'");
  }
  if (mode != AmpMode::kOff && dtype == torch::kHalf && device == torch::kCPU) {
    throw ConfigError(
        "amp.dtype=fp16: fp16 autocast is not supported on CPU (LibTorch has no CPU fp16 matmul or "
        "log_softmax kernels); use bf16 (amp.dtype=bf16)");
  }
  scaler_options(options).validate();
}

void AmpOptions::declare(config::Fields<AmpOptions>& f) {
  f.add("mode", &AmpOptions::mode, "off (fp32), autocast (low-precision ops, fp32 weights), master (low weights, fp32 master copy)")
      .one_of({"off", "autocast", "master"});
  f.add("dtype", &AmpOptions::dtype, "low-precision dtype (fp16 needs CUDA)").one_of({"bf16", "fp16", "bfloat16", "float16", "half"});
  f.add("loss_scaling", &AmpOptions::loss_scaling, "dynamic loss scaling: auto (fp16 only), on, off").one_of({"auto", "on", "off"});
  f.add("keep_norm_fp32", &AmpOptions::keep_norm_fp32, "master mode: keep normalization parameters in fp32");
  f.add("scaler.init_scale", &AmpOptions::init_scale, "initial loss scale").greater_than(0);
  f.add("scaler.growth_factor", &AmpOptions::growth_factor, "scale multiplier after growth_interval clean steps").greater_than(1);
  f.add("scaler.backoff_factor", &AmpOptions::backoff_factor, "scale multiplier on inf/NaN").greater_than(0).less_than(1);
  f.add("scaler.growth_interval", &AmpOptions::growth_interval, "clean steps before the scale grows").min(1);
  f.add("scaler.hysteresis", &AmpOptions::hysteresis, "overflows tolerated before backing off").min(1);
  f.add("scaler.min_scale", &AmpOptions::min_scale, "lower bound of the scale").greater_than(0);
  f.add("scaler.max_scale", &AmpOptions::max_scale, "upper bound of the scale").greater_than(0);
  f.add("scaler.max_consecutive_skips", &AmpOptions::max_consecutive_skips,
        "stop with an error after this many skipped steps in a row (0: never)").min(0);
}

GradScalerOptions scaler_options(const AmpOptions& options) {
  GradScalerOptions out;
  out.init_scale(options.init_scale)
      .growth_factor(options.growth_factor)
      .backoff_factor(options.backoff_factor)
      .growth_interval(options.growth_interval)
      .hysteresis(options.hysteresis)
      .min_scale(options.min_scale)
      .max_scale(options.max_scale)
      .max_consecutive_skips(options.max_consecutive_skips);
  const bool low = parse_mode(options.mode) != AmpMode::kOff;
  if (options.loss_scaling == "on") {
    out.enabled(low);
  } else if (options.loss_scaling == "off") {
    out.enabled(false);
  } else if (options.loss_scaling == "auto") {
    out.enabled(low && parse_dtype(options.dtype) == torch::kHalf);
  } else {
    throw ConfigError("amp.loss_scaling: expected auto, on or off, got '" + options.loss_scaling + "'");
  }
  return out;
}

}  // namespace retort::amp
