#include "models/int8.h"

#include "core/error.h"

namespace retort::models {
namespace {

const std::string kWeight = ".weight";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The scalar tensors of an activation's parameters, as stored.
void put_affine(std::map<std::string, torch::Tensor>& out, const std::string& prefix, const Affine8& a) {
  out[prefix + "_scale"] = torch::tensor(static_cast<float>(a.scale));
  out[prefix + "_zero_point"] = torch::tensor(static_cast<uint8_t>(a.zero_point), torch::kUInt8);
}

std::optional<Affine8> take_affine(std::map<std::string, torch::Tensor>& rest, const std::string& prefix,
                                   const std::string& origin) {
  auto scale = rest.find(prefix + "_scale");
  auto zero = rest.find(prefix + "_zero_point");
  if (scale == rest.end() && zero == rest.end()) return std::nullopt;
  if (scale == rest.end() || zero == rest.end())
    throw CheckpointError(origin + ": " + prefix + (scale == rest.end() ? "_scale" : "_zero_point") +
                          " is missing beside its twin");
  Affine8 a{scale->second.item<double>(), zero->second.item<int64_t>()};
  if (!(a.scale > 0) || a.zero_point < 0 || a.zero_point > 255)
    throw CheckpointError(origin + ": " + prefix + ": scale must be > 0 and zero point in [0, 255]");
  rest.erase(scale);
  rest.erase(zero);
  return a;
}

}  // namespace

std::string Int8Layer::weight_name() const { return name + kWeight; }

torch::Tensor Int8Layer::dequantized() const { return values.to(torch::kFloat32) * scale; }

std::string layer_name(const std::string& weight_name) {
  return ends_with(weight_name, kWeight) ? weight_name.substr(0, weight_name.size() - kWeight.size()) : weight_name;
}

bool has_int8_layers(const std::map<std::string, torch::Tensor>& tensors) {
  for (const auto& [name, t] : tensors)
    if (t.scalar_type() == torch::kInt8 && ends_with(name, kWeight)) return true;
  return false;
}

std::map<std::string, torch::Tensor> int8_tensors(std::map<std::string, torch::Tensor> fp32,
                                                  const std::vector<Int8Layer>& layers) {
  for (const auto& l : layers) {
    fp32[l.weight_name()] = l.values;
    fp32[l.name + ".weight_scale"] = l.scale;
    fp32[l.name + ".weight_zero_point"] = torch::zeros_like(l.scale, torch::kInt8);
    if (l.input) put_affine(fp32, l.name + ".input", *l.input);
    if (l.output) put_affine(fp32, l.name + ".output", *l.output);
  }
  return fp32;
}

SplitTensors split_int8_tensors(const std::map<std::string, torch::Tensor>& tensors,
                                const std::map<std::string, amp::LayerOp>& ops, const std::string& origin) {
  SplitTensors out;
  std::map<std::string, torch::Tensor> rest = tensors;
  for (const auto& [name, values] : tensors) {
    if (values.scalar_type() != torch::kInt8 || !ends_with(name, kWeight)) continue;
    Int8Layer l;
    l.name = layer_name(name);
    auto op = ops.find(name);
    if (op != ops.end())
      l.op = op->second;
    else if (values.dim() == 2)
      l.lookup = true;
    else
      throw CheckpointError(origin + ": " + name +
                            " is int8, but the model has no linear or convolution layer with that weight");
    l.values = values;
    auto scale = rest.find(l.name + ".weight_scale");
    if (scale == rest.end())
      throw CheckpointError(origin + ": " + name + " is int8 without " + l.name + ".weight_scale");
    l.scale = scale->second.to(torch::kFloat32);
    std::vector<int64_t> expected(values.dim(), 1);
    expected[l.axis()] = values.size(l.axis());
    if (l.scale.sizes() != torch::IntArrayRef(expected))
      throw CheckpointError(origin + ": " + l.name + ".weight_scale has shape " + c10::str(l.scale.sizes()) +
                            ", expected one scale per output channel of " + name + " " + c10::str(values.sizes()));
    rest.erase(scale);
    rest.erase(l.name + ".weight_zero_point");
    l.input = take_affine(rest, l.name + ".input", origin);
    l.output = take_affine(rest, l.name + ".output", origin);
    rest[name] = l.dequantized();
    out.layers.push_back(std::move(l));
  }
  out.fp32 = std::move(rest);
  return out;
}

}  // namespace retort::models
