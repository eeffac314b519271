#pragma once
/// int8 kernels on LibTorch's quantized ops (oneDNN, FBGEMM or QNNPACK underneath), one per
/// layer, standing in for the layer's weight in amp's ops (amp/layer_kernels.h).
///   quant::use_engine(quant::Engine::kAuto);               // before packing any weight
///   kernels.add(weight, quant::make_kernel(layer, seen));        // its amp::linear runs int8
#include <torch/torch.h>

#include <memory>

#include "amp/layer_kernels.h"
#include "models/int8.h"

namespace retort::quant {

/// LibTorch's quantized-op backends. auto: the first this LibTorch supports of
/// onednn, fbgemm, qnnpack (bench/RESULTS.md "Quantization" says why oneDNN
/// first).
enum class Engine { kAuto, kOneDnn, kFbgemm, kQnnpack };

std::string engine_name(Engine engine);

/// Selects the backend of LibTorch's quantized ops for this process and returns its name;
/// auto: onednn, else fbgemm, else qnnpack. Error naming the engine and the supported ones
/// when this LibTorch lacks it. Packing binds a weight to the engine selected then.
std::string use_engine(Engine engine);

/// The kernel of `layer` (its int8 weight, and for static its activations' parameters),
/// called as `seen` was (the op, a convolution's stride, padding, dilation and groups, the
/// layer's fp32 bias, which may be undefined). Linear and Conv1D layers: dynamic or static;
/// a convolution: static only (Error otherwise). It runs on CPU tensors outside autograd
/// and says so, naming the layer, when called otherwise.
std::shared_ptr<const amp::LayerKernel> make_kernel(const models::Int8Layer& layer, const amp::LayerCall& seen);

/// Symmetric int8 per output channel (along `axis`): values round(w / scale) in
/// [-127, 127], scale max|w| / 127 per channel (1 for an all-zero channel),
/// shaped to broadcast over w.
struct Int8Weight {
  torch::Tensor values, scale;
};
Int8Weight quantize_weight(const torch::Tensor& w, int64_t axis);

/// What LibTorch's op computes for `call` in fp32: the reference the kernels
/// stand in for, and what calibration observes.
torch::Tensor fp32_layer(const amp::LayerCall& call);

}  // namespace retort::quant
