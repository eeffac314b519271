#pragma once
/// The int8 layers of a quantized model, and how a checkpoint stores them. `retort quantize`
/// (quant/) makes them; a model holds them (Model::int8_layers) while their kernels,
/// registered for the layers' weights (amp/layer_kernels.h), compute; ONNX export writes
/// them in QDQ form. In a checkpoint's model.safetensors a layer `L` (its weight `L.weight`) is
///   L.weight              int8, the weight's shape: round(w / scale), in [-127, 127]
///   L.weight_scale        float32, one per output channel (per row for a lookup table),
///                         shaped to broadcast over L.weight
///   L.weight_zero_point   int8 zeros, the scale's shape (symmetric)
///   L.input_scale, L.input_zero_point, L.output_scale, L.output_zero_point
///                         static quantization only: float32 and uint8 scalars, the
///                         layer's input and output as quint8 (real = scale * (q - zero_point))
/// Every other tensor is the fp32 model's own.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amp/layer_kernels.h"

namespace retort::models {

/// quint8 affine parameters of an activation: real = scale * (q - zero_point),
/// q in [0, 255].
struct Affine8 {
  double scale = 1.0;
  int64_t zero_point = 0;
};

struct Int8Layer {
  std::string name;                         ///< "stage0.conv0": its weight's name without ".weight"
  amp::LayerOp op = amp::LayerOp::kLinear;  ///< how the model calls it
  /// A table the model looks rows up in (an embedding) rather than multiplies:
  /// int8 in storage, per row; the model computes with the dequantized rows, no
  /// kernel.
  bool lookup = false;
  torch::Tensor values;  ///< int8, the weight's shape
  torch::Tensor scale;   ///< float32, broadcastable to `values`, 1 per output channel
  std::optional<Affine8> input,
      output;  ///< static quantization: the activations' parameters

  std::string weight_name() const;
  /// The output-channel axis of `values` (0, or 1 for GPT-2's Conv1D [in,
  /// out]).
  int64_t axis() const { return op == amp::LayerOp::kConv1D ? 1 : 0; }
  /// values * scale: the fp32 weight the int8 one stands for.
  torch::Tensor dequantized() const;
};

/// The name of the layer whose weight is `weight_name` ("fc0.weight" -> "fc0").
std::string layer_name(const std::string& weight_name);

/// Whether a checkpoint's tensors hold int8 layers.
bool has_int8_layers(const std::map<std::string, torch::Tensor>& tensors);

/// A quantized model's tensors as above: `fp32` (the model's weights) with each
/// layer's weight replaced by its int8 tensors.
std::map<std::string, torch::Tensor> int8_tensors(std::map<std::string, torch::Tensor> fp32,
                                                  const std::vector<Int8Layer>& layers);

/// Splits stored tensors: the int8 layers (each layer's op from `ops`, by
/// weight name, as a forward found them; a 2-D weight not there is a lookup
/// table), and the fp32 weights with each int8 weight dequantized in place.
/// CheckpointError naming `origin` and the tensor for a layer without its scale
/// (or with one of another shape), or an int8 weight of another rank that no
/// layer op was found for.
struct SplitTensors {
  std::vector<Int8Layer> layers;
  std::map<std::string, torch::Tensor> fp32;
};
SplitTensors split_int8_tensors(const std::map<std::string, torch::Tensor>& tensors,
                                const std::map<std::string, amp::LayerOp>& ops, const std::string& origin);

}  // namespace retort::models
