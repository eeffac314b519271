#pragma once
/// Kernels that stand in for a weight in amp's layer ops: amp::linear, amp::addmm (GPT-2's
/// Conv1D, weight [in, out]) and amp::conv2d look their weight up here before running
/// LibTorch's op. quant/ installs int8 kernels this way, so every model family runs
/// quantized without a line of its own, and observes layers the same way to calibrate.
///   amp::LayerKernels kernels;                       // registrations live as long as it
///   kernels.add(fc->weight, std::make_shared<MyInt8Linear>(...));
///   model->forward(x);                               // fc's amp::linear runs MyInt8Linear
/// The lookup is by the weight's tensor (its TensorImpl), which Module::to keeps; with no
/// kernel registered anywhere it costs one atomic load per op.
#include <torch/torch.h>

#include <memory>
#include <vector>

namespace retort::amp {

/// How the model called the layer whose weight a kernel stands in for.
enum class LayerOp {
  kLinear,  ///< amp::linear: x @ weight^T + bias, weight [out, in]
  kConv1D,  ///< amp::addmm(bias, x, weight): x @ weight + bias, weight [in, out]
  kConv2d,  ///< amp::conv2d, weight [out, in / groups, kh, kw]
};

struct LayerCall {
  LayerOp op = LayerOp::kLinear;
  torch::Tensor x, weight,
      bias;                                        ///< as the model passed them (bias may be undefined)
  std::vector<int64_t> stride, padding, dilation;  ///< kConv2d only
  int64_t groups = 1;
};

class LayerKernel {
 public:
  virtual ~LayerKernel() = default;
  /// What the layer computes for `call`, in place of LibTorch's op.
  virtual torch::Tensor run(const LayerCall& call) const = 0;
};

/// A set of registrations, removed when it goes. A weight has at most one
/// kernel: adding a second for the same weight (from any set) throws Error.
class LayerKernels {
 public:
  LayerKernels() = default;
  ~LayerKernels();
  LayerKernels(const LayerKernels&) = delete;
  LayerKernels& operator=(const LayerKernels&) = delete;

  void add(const torch::Tensor& weight, std::shared_ptr<const LayerKernel> kernel);
  size_t size() const { return weights_.size(); }

 private:
  std::vector<torch::Tensor> weights_;  ///< held, so no other tensor takes their address
};

/// The kernel registered for `weight`, or null. What amp's layer ops call.
std::shared_ptr<const LayerKernel> layer_kernel(const torch::Tensor& weight);

}  // namespace retort::amp
