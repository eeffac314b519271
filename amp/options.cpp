#include "amp/options.h"

#include "core/error.h"

namespace retort::amp {

void validate(const AmpOptions& options, torch::DeviceType device) {
  if (options.mode != AmpMode::kOff && options.dtype == torch::kHalf && device == torch::kCPU) {
    throw ConfigError(
        "amp.dtype=fp16: fp16 autocast is not supported on CPU (LibTorch has no CPU fp16 matmul or "
        "log_softmax kernels); use bf16 (amp.dtype=bf16)");
  }
  if (options.dtype != torch::kBFloat16 && options.dtype != torch::kHalf)
    throw ConfigError(std::string("amp.dtype: expected bf16 or fp16, got ") + c10::toString(options.dtype));
  options.scaler.validate();
}

GradScalerOptions scaler_options(const AmpOptions& options) {
  GradScalerOptions out = options.scaler;
  const bool low = options.mode != AmpMode::kOff;
  switch (options.loss_scaling) {
    case LossScaling::kOn: return out.enabled(low);
    case LossScaling::kOff: return out.enabled(false);
    case LossScaling::kAuto: break;
  }
  return out.enabled(low && options.dtype == torch::kHalf);
}

void AmpOptions::declare(config::Fields<AmpOptions>& f) {
  f.add("mode", &AmpOptions::mode, "off (fp32), autocast (low-precision ops, fp32 weights), master (low weights, fp32 master copy)");
  f.add("dtype", &AmpOptions::dtype, "low-precision dtype (fp16 needs CUDA)");
  f.add("loss_scaling", &AmpOptions::loss_scaling, "dynamic loss scaling: auto (fp16 only), on, off");
  f.add("keep_norm_fp32", &AmpOptions::keep_norm_fp32, "master mode: keep normalization parameters in fp32");
  f.add_section("scaler", &AmpOptions::scaler);
}

}  // namespace retort::amp
