#pragma once
/// An ONNX graph (opset 17) under construction, written with the protobuf classes of
/// Debian's libonnx-dev. Values are named by strings; each op appends one node with one
/// output; torch tensors become initializers. Nothing here knows a model: the family
/// emitters of models/onnx_export.cpp build their graphs through it.
///   OnnxGraph g("retort-mlp");
///   auto x = g.input("input", torch::kFloat, {"batch", 784});
///   auto w = g.initializer("fc0.weight", weight);
///   auto y = g.op("Relu", {g.op("MatMul", {x, g.op("Transpose", {w})})});
///   g.output("logits", y, torch::kFloat, {"batch", 10});
///   std::string bytes = g.serialize({{"retort.step", "12"}});
#include <torch/torch.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace onnx {
class ModelProto;
class GraphProto;
}  // namespace onnx

namespace retort::models {

/// The operator set the graphs are written in: opset 17 is the first with
/// LayerNormalization, and what TensorRT 8.6 and ONNX Runtime >= 1.13 read.
constexpr int64_t kOnnxOpset = 17;

/// One dimension of a graph input or output: a fixed size, or the name of a size known
/// only at run time (a dynamic axis, e.g. "batch").
struct OnnxDim {
  OnnxDim(int64_t size) : size(size) {}               // NOLINT(google-explicit-constructor)
  OnnxDim(const char* name) : size(-1), name(name) {}  // NOLINT(google-explicit-constructor)
  int64_t size;
  std::string name;
};

/// A node attribute: an integer, a float or a list of integers. Made by the factories,
/// since an int literal converts as well to int64_t as to float.
struct OnnxAttribute {
  static OnnxAttribute integer(const std::string& name, int64_t value) { return {name, value}; }
  static OnnxAttribute real(const std::string& name, double value) { return {name, static_cast<float>(value)}; }
  static OnnxAttribute integers(const std::string& name, std::vector<int64_t> values) {
    return {name, std::move(values)};
  }
  std::string name;
  std::variant<int64_t, float, std::vector<int64_t>> value;
};

class OnnxGraph {
 public:
  explicit OnnxGraph(const std::string& name);
  ~OnnxGraph();
  OnnxGraph(const OnnxGraph&) = delete;
  OnnxGraph& operator=(const OnnxGraph&) = delete;

  /// Declares a graph input of `type` (float32 or int64) and `dims`; returns its name.
  std::string input(const std::string& name, torch::ScalarType type, const std::vector<OnnxDim>& dims);
  /// Makes `value` the graph output `name` (an Identity node renames it).
  void output(const std::string& name, const std::string& value, torch::ScalarType type,
              const std::vector<OnnxDim>& dims);
  /// A constant stored in the file under `name` (float32, int64, bool, int8 or uint8; CPU copy,
  /// contiguous); retort::Error naming it for another dtype or a name already taken.
  std::string initializer(const std::string& name, const torch::Tensor& value);
  /// A constant named by the graph: shapes, axes, indices (int64), scales (float).
  std::string constant(const torch::Tensor& value);
  /// A 1-D int64 constant (shapes, axes, starts and ends).
  std::string ints(const std::vector<int64_t>& values);
  /// A float32 scalar constant.
  std::string scalar(double value);

  /// Appends node `type`(inputs) with `attributes`; returns the name of its one output.
  std::string op(const std::string& type, const std::vector<std::string>& inputs,
                 const std::vector<OnnxAttribute>& attributes = {});
  /// The same for a node with several outputs (DynamicQuantizeLinear's three); their names.
  std::vector<std::string> ops(const std::string& type, const std::vector<std::string>& inputs, size_t outputs,
                               const std::vector<OnnxAttribute>& attributes = {});

  /// The model file's bytes: this graph at kOnnxOpset, retort as producer, `metadata` as
  /// its metadata_props. retort::Error when it exceeds protobuf's 2 GiB.
  std::string serialize(const std::map<std::string, std::string>& metadata);

 private:
  /// `name`, now taken; retort::Error when it already was.
  std::string claim(const std::string& name);
  /// "<hint>_<n>", the first n not taken, now taken.
  std::string fresh_name(const std::string& hint);
  /// `value` as the initializer `name`, a name already claimed.
  std::string add_initializer(const std::string& name, const torch::Tensor& value);

  std::unique_ptr<onnx::ModelProto> model_;
  onnx::GraphProto* graph_;  // inside model_
  std::set<std::string> taken_;
  std::map<std::string, int64_t> next_index_;  // per hint
};

}  // namespace retort::models
