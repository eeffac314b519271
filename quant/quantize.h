#pragma once
/// Post-training int8 quantization of any model family: its linear and convolution layers
/// (whatever goes through amp::linear, amp::addmm and amp::conv2d) get int8 weights per
/// output channel and, for static quantization, activation ranges from calibration batches.
///   auto q = quant::quantize(*model, options, calibration_batches);  // q.kept: left fp32, and why
///   quant::attach(*model, q.layers);                                 // the model now runs int8
///   auto tensors = models::int8_tensors(models::weights_of(*model), model->int8_layers());
///   quant::load_int8(*fresh, tensors, "model.safetensors");          // and back
#include <map>
#include <string>
#include <vector>

#include "amp/layer_kernels.h"
#include "models/model.h"
#include "quant/kernels.h"
#include "quant/options.h"

namespace retort::quant {

/// The layers of `model`: every weight that a forward of one sample input
/// passes to amp::linear, amp::addmm or amp::conv2d, by weight name, with how
/// it was called (the op and a convolution's geometry, the bias it was given;
/// not x or the weight).
std::map<std::string, amp::LayerCall> find_layers(models::Model& model);

/// A layer left in fp32, and why.
struct KeptLayer {
  std::string name, why;
};

struct Quantized {
  std::vector<models::Int8Layer> layers;
  std::vector<KeptLayer> kept;
};

/// `model`'s layers quantized per `options`, the model unchanged: weights
/// symmetric int8 per output channel; static: each layer's input and output
/// ranged over `batches` (inputs as the model takes them) by
/// options.calibration. Dynamic leaves convolutions in fp32. The 2-D parameters
/// no layer multiplies (embedding tables) become int8 per row in storage only
/// (Int8Layer::lookup). ConfigError naming quant.skip for a name that is no
/// layer (with a did-you-mean), and quant.batches when static gets no batch.
Quantized quantize(models::Model& model, const QuantOptions& options, const std::vector<torch::Tensor>& batches);

/// Makes `model` compute with `layers`: their kernels registered on `engine`
/// (use_engine), its parameters holding the dequantized weights,
/// model.int8_layers() the layers. Returns the engine's name.
std::string attach(models::Model& model, std::vector<models::Int8Layer> layers, Engine engine = Engine::kAuto);

/// A checkpoint's tensors (models/int8.h) into a freshly built `model`: the
/// fp32 weights loaded (models::load_weights, errors naming `origin`), then the
/// int8 layers attached.
std::string load_int8(models::Model& model, const std::map<std::string, torch::Tensor>& tensors,
                      const std::string& origin, Engine engine = Engine::kAuto);

}  // namespace retort::quant
