#include "amp/layer_kernels.h"

#include <atomic>
#include <shared_mutex>
#include <unordered_map>

#include "core/error.h"

namespace retort::amp {
namespace {

struct Registry {
  std::shared_mutex mutex;
  std::unordered_map<const c10::TensorImpl*, std::shared_ptr<const LayerKernel>> kernels;
  std::atomic<size_t> size{0};  // read without the lock: the common case is none at all
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

LayerKernels::~LayerKernels() {
  auto& r = registry();
  std::unique_lock lock(r.mutex);
  for (const auto& w : weights_) r.kernels.erase(w.unsafeGetTensorImpl());
  r.size = r.kernels.size();
}

void LayerKernels::add(const torch::Tensor& weight, std::shared_ptr<const LayerKernel> kernel) {
  if (!weight.defined() || !kernel) throw Error("amp::LayerKernels::add: an undefined weight or a null kernel");
  auto& r = registry();
  std::unique_lock lock(r.mutex);
  if (!r.kernels.emplace(weight.unsafeGetTensorImpl(), std::move(kernel)).second)
    throw Error("amp::LayerKernels::add: this weight already has a kernel");
  weights_.push_back(weight);
  r.size = r.kernels.size();
}

std::shared_ptr<const LayerKernel> layer_kernel(const torch::Tensor& weight) {
  auto& r = registry();
  if (r.size.load(std::memory_order_relaxed) == 0 || !weight.defined()) return nullptr;
  std::shared_lock lock(r.mutex);
  auto it = r.kernels.find(weight.unsafeGetTensorImpl());
  return it == r.kernels.end() ? nullptr : it->second;
}

}  // namespace retort::amp
