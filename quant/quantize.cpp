#include "quant/quantize.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/text.h"
#include "models/eval_scope.h"
#include "models/weights.h"
#include "quant/calibration.h"
#include "quant/kernels.h"

namespace retort::quant {
namespace {

/// One input the model takes: a token for a language model, a blank image
/// otherwise.
torch::Tensor sample_input(const models::ModelOptions& o) {
  if (o.language_model()) return torch::zeros({1, 1}, torch::kInt64);
  return torch::zeros({1, o.in_channels, o.image_size, o.image_size});
}

struct Seen {
  bool called = false;
  amp::LayerCall call;  ///< the first call: its bias (a parameter, or none), not
                        ///< its input or weight
};

/// Runs the layer in fp32, noting how it was called.
class Recorder : public amp::LayerKernel {
 public:
  explicit Recorder(Seen* seen) : seen_(seen) {}
  torch::Tensor run(const amp::LayerCall& call) const override {
    if (!seen_->called) {
      seen_->called = true;
      seen_->call = call;
      seen_->call.x = seen_->call.weight = torch::Tensor();
    }
    return fp32_layer(call);
  }

 private:
  Seen* seen_;
};

/// Runs the layer in fp32, observing its input and output.
class Observer : public amp::LayerKernel {
 public:
  Observer(RangeObserver* input, RangeObserver* output) : input_(input), output_(output) {}
  torch::Tensor run(const amp::LayerCall& call) const override {
    input_->observe(call.x);
    auto y = fp32_layer(call);
    output_->observe(y);
    return y;
  }

 private:
  RangeObserver *input_, *output_;
};

/// The 2-D parameters no layer multiplies: tables the model looks rows up in
/// (embeddings).
std::vector<std::string> lookup_tables(models::Model& model, const std::map<std::string, amp::LayerCall>& layers) {
  std::vector<std::string> tables;
  for (const auto& p : model.named_parameters())
    if (p.value().dim() == 2 && p.value().is_floating_point() && !layers.count(p.key())) tables.push_back(p.key());
  return tables;
}

void check_skip(const std::vector<std::string>& skip, const std::vector<std::string>& weights) {
  std::vector<std::string> names;
  for (const auto& weight : weights) names.push_back(models::layer_name(weight));
  for (const auto& s : skip) {
    if (std::find(names.begin(), names.end(), s) != names.end()) continue;
    const std::string near = config::suggest(s, names);
    throw ConfigError("quant.skip: '" + s + "' is not a linear, convolution or embedding layer of the model" +
                      (near.empty() ? "" : " (did you mean '" + near + "'?)") + "; its layers: " + join(names));
  }
}

struct ActivationObservers {
  RangeObserver input, output;
};

/// The inputs and outputs of the layers with weights `weights`, observed in
/// fp32 over `batches`.
std::map<std::string, ActivationObservers> calibrate(models::Model& model, const std::vector<std::string>& weights,
                                                     const QuantOptions& o, const std::vector<torch::Tensor>& batches) {
  if (batches.empty()) throw ConfigError("quant.batches: static quantization needs calibration batches, got none");
  std::map<std::string, ActivationObservers> observers;
  const auto params = model.named_parameters();
  amp::LayerKernels kernels;
  for (const auto& w : weights) {
    auto& a = observers
                  .emplace(w, ActivationObservers{RangeObserver(o.calibration, o.percentile),
                                                  RangeObserver(o.calibration, o.percentile)})
                  .first->second;
    kernels.add(params[w], std::make_shared<Observer>(&a.input, &a.output));
  }
  torch::NoGradGuard no_grad;
  models::EvalScope eval(model);  // batch norm keeps its statistics
  for (const auto& x : batches) model.forward(x);
  return observers;
}

/// The weight `name` of `value`, int8 per output channel (a lookup table: per row).
models::Int8Layer int8_weight(const std::string& name, const torch::Tensor& value, amp::LayerOp op, bool lookup) {
  models::Int8Layer l;
  l.name = models::layer_name(name);
  l.op = op;
  l.lookup = lookup;
  auto q = quantize_weight(value, l.axis());
  l.values = q.values;
  l.scale = q.scale;
  return l;
}

models::Affine8 affine_of(const RangeObserver& observer) {
  const auto a = affine_uint8(observer.range());
  return {a.scale, a.zero_point};
}

/// attach() with the model's layers as find_layers() gave them.
std::string attach_found(models::Model& model, std::vector<models::Int8Layer> layers, Engine engine,
                         const std::map<std::string, amp::LayerCall>& calls) {
  const std::string engine_name = use_engine(engine);
  auto params = model.named_parameters();
  auto kernels = std::make_shared<amp::LayerKernels>();
  torch::NoGradGuard no_grad;
  for (const auto& l : layers) {
    const std::string weight = l.weight_name();
    if (!params.contains(weight)) throw Error("quant::attach: the model has no parameter " + weight);
    auto& w = params[weight];
    w.copy_(l.dequantized());
    w.set_requires_grad(false);
    if (l.lookup) continue;
    auto call = calls.find(weight);
    if (call == calls.end()) throw Error("quant::attach: " + weight + " is no linear or convolution layer's weight");
    kernels->add(w, make_kernel(l, call->second));
  }
  model.set_int8(std::move(layers), std::move(kernels));
  return engine_name;
}

}  // namespace

std::map<std::string, amp::LayerCall> find_layers(models::Model& model) {
  std::map<std::string, Seen> seen;
  amp::LayerKernels kernels;
  for (const auto& p : model.named_parameters())
    if (p.value().dim() == 2 || p.value().dim() == 4)
      kernels.add(p.value(), std::make_shared<Recorder>(&seen[p.key()]));
  {
    torch::NoGradGuard no_grad;
    models::EvalScope eval(model);  // batch norm keeps its statistics
    model.forward(sample_input(model.options()));
  }
  std::map<std::string, amp::LayerCall> layers;
  for (const auto& [name, s] : seen)
    if (s.called) layers[name] = s.call;
  return layers;
}

Quantized quantize(models::Model& model, const QuantOptions& o, const std::vector<torch::Tensor>& batches) {
  if (model.quantized()) throw ConfigError("quant.method: the model is int8 already; quantize its fp32 run");
  const auto layers = find_layers(model);
  const auto tables = lookup_tables(model, layers);
  std::vector<std::string> every;
  for (const auto& [weight, call] : layers) every.push_back(weight);
  every.insert(every.end(), tables.begin(), tables.end());
  check_skip(o.skip, every);
  auto skipped = [&](const std::string& weight) {
    return std::find(o.skip.begin(), o.skip.end(), models::layer_name(weight)) != o.skip.end();
  };
  Quantized out;
  std::vector<std::string> quantized;
  for (const auto& [weight, call] : layers) {
    const std::string name = models::layer_name(weight);
    if (skipped(weight))
      out.kept.push_back({name, "in quant.skip"});
    else if (call.op == amp::LayerOp::kConv2d && o.method == Method::kDynamic)
      out.kept.push_back({name,
                          "a convolution: dynamic quantization covers linear layers (quant.method=static "
                          "quantizes convolutions)"});
    else
      quantized.push_back(weight);
  }
  std::map<std::string, ActivationObservers> observers;
  if (o.method == Method::kStatic) observers = calibrate(model, quantized, o, batches);
  const auto params = model.named_parameters();
  for (const auto& weight : quantized) {
    auto l = int8_weight(weight, params[weight], layers.at(weight).op, false);
    if (o.method == Method::kStatic) {
      l.input = affine_of(observers.at(weight).input);
      l.output = affine_of(observers.at(weight).output);
    }
    out.layers.push_back(std::move(l));
  }
  for (const auto& weight : tables) {  // int8 in storage only: the model computes with their rows
    if (skipped(weight)) {
      out.kept.push_back({models::layer_name(weight), "in quant.skip"});
      continue;
    }
    out.layers.push_back(int8_weight(weight, params[weight], amp::LayerOp::kLinear, true));
  }
  return out;
}

std::string attach(models::Model& model, std::vector<models::Int8Layer> layers, Engine engine) {
  return attach_found(model, std::move(layers), engine, find_layers(model));
}

std::string load_int8(models::Model& model, const std::map<std::string, torch::Tensor>& tensors,
                      const std::string& origin, Engine engine) {
  const auto calls = find_layers(model);  // before the weights: loading keeps the bias tensors the calls hold
  std::map<std::string, amp::LayerOp> ops;
  for (const auto& [weight, call] : calls) ops[weight] = call.op;
  auto split = models::split_int8_tensors(tensors, ops, origin);
  models::load_weights(model, split.fp32, origin);
  return attach_found(model, std::move(split.layers), engine, calls);
}

}  // namespace retort::quant
