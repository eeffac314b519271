#include "models/onnx_graph.h"

#include <onnx/onnx_pb.h>

#include <limits>

#include "core/error.h"

namespace retort::models {
namespace {

// The IR version released with opset 17 (ONNX 1.12): every runtime that reads the opset
// reads it, where a newer libonnx's own IR_VERSION might not be.
constexpr int64_t kIrVersion = 8;

onnx::TensorProto_DataType element_type(torch::ScalarType type, const std::string& name) {
  switch (type) {
    case torch::kFloat: return onnx::TensorProto_DataType_FLOAT;
    case torch::kLong: return onnx::TensorProto_DataType_INT64;
    case torch::kBool: return onnx::TensorProto_DataType_BOOL;
    case torch::kChar: return onnx::TensorProto_DataType_INT8;
    case torch::kByte: return onnx::TensorProto_DataType_UINT8;
    default:
      throw Error("onnx: '" + name + "' has dtype " + c10::toString(type) +
                  "; expected float32, int64, bool, int8 or uint8");
  }
}

void describe(onnx::ValueInfoProto& info, const std::string& name, torch::ScalarType type,
              const std::vector<OnnxDim>& dims) {
  info.set_name(name);
  auto* tensor = info.mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(element_type(type, name));
  auto* shape = tensor->mutable_shape();
  for (const auto& d : dims) {
    auto* dim = shape->add_dim();
    if (d.name.empty())
      dim->set_dim_value(d.size);
    else
      dim->set_dim_param(d.name);
  }
}

void set_attribute(onnx::AttributeProto& a, const OnnxAttribute& attribute) {
  a.set_name(attribute.name);
  if (const auto* i = std::get_if<int64_t>(&attribute.value)) {
    a.set_type(onnx::AttributeProto_AttributeType_INT);
    a.set_i(*i);
  } else if (const auto* f = std::get_if<float>(&attribute.value)) {
    a.set_type(onnx::AttributeProto_AttributeType_FLOAT);
    a.set_f(*f);
  } else {
    a.set_type(onnx::AttributeProto_AttributeType_INTS);
    for (int64_t v : std::get<std::vector<int64_t>>(attribute.value)) a.add_ints(v);
  }
}

}  // namespace

OnnxGraph::OnnxGraph(const std::string& name) : model_(std::make_unique<onnx::ModelProto>()) {
  model_->set_ir_version(kIrVersion);
  model_->set_producer_name("retort");
  model_->set_producer_version(RETORT_VERSION);
  auto* opset = model_->add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  graph_ = model_->mutable_graph();
  graph_->set_name(name);
}

OnnxGraph::~OnnxGraph() = default;

std::string OnnxGraph::claim(const std::string& name) {
  if (!taken_.insert(name).second) throw Error("onnx: the graph already has a value named '" + name + "'");
  return name;
}

std::string OnnxGraph::fresh_name(const std::string& hint) {
  for (;;) {
    std::string name = hint + "_" + std::to_string(next_index_[hint]++);
    if (taken_.insert(name).second) return name;
  }
}

std::string OnnxGraph::input(const std::string& name, torch::ScalarType type, const std::vector<OnnxDim>& dims) {
  describe(*graph_->add_input(), claim(name), type, dims);
  return name;
}

void OnnxGraph::output(const std::string& name, const std::string& value, torch::ScalarType type,
                       const std::vector<OnnxDim>& dims) {
  auto* node = graph_->add_node();
  node->set_op_type("Identity");
  node->set_name(claim(name));
  node->add_input(value);
  node->add_output(name);
  describe(*graph_->add_output(), name, type, dims);
}

std::string OnnxGraph::initializer(const std::string& name, const torch::Tensor& value) {
  return add_initializer(claim(name), value);
}

std::string OnnxGraph::add_initializer(const std::string& name, const torch::Tensor& value) {
  const auto t = value.detach().to(torch::kCPU).contiguous();
  auto* tensor = graph_->add_initializer();
  tensor->set_name(name);
  tensor->set_data_type(element_type(t.scalar_type(), name));
  for (int64_t d : t.sizes()) tensor->add_dims(d);
  tensor->set_raw_data(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());  // little-endian, as ONNX
  return name;
}

std::string OnnxGraph::constant(const torch::Tensor& value) { return add_initializer(fresh_name("const"), value); }

std::string OnnxGraph::ints(const std::vector<int64_t>& values) {
  return constant(torch::tensor(values, torch::kLong));
}

std::string OnnxGraph::scalar(double value) { return constant(torch::tensor(value, torch::kFloat)); }

std::string OnnxGraph::op(const std::string& type, const std::vector<std::string>& inputs,
                          const std::vector<OnnxAttribute>& attributes) {
  return ops(type, inputs, 1, attributes).front();
}

std::vector<std::string> OnnxGraph::ops(const std::string& type, const std::vector<std::string>& inputs,
                                        size_t outputs, const std::vector<OnnxAttribute>& attributes) {
  auto* node = graph_->add_node();
  std::vector<std::string> out = {fresh_name(type)};
  node->set_op_type(type);
  node->set_name(out.front());
  for (const auto& in : inputs) node->add_input(in);
  while (out.size() < outputs) out.push_back(fresh_name(type));
  for (const auto& o : out) node->add_output(o);
  for (const auto& a : attributes) set_attribute(*node->add_attribute(), a);
  return out;
}

std::string OnnxGraph::serialize(const std::map<std::string, std::string>& metadata) {
  model_->clear_metadata_props();
  for (const auto& [key, value] : metadata) {
    auto* prop = model_->add_metadata_props();
    prop->set_key(key);
    prop->set_value(value);
  }
  const size_t bytes = model_->ByteSizeLong();
  if (bytes > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw Error("onnx: the model takes " + std::to_string(bytes) +
                " bytes; a protobuf file holds at most 2 GiB (weights as external data are not written)");
  return model_->SerializeAsString();
}

}  // namespace retort::models
