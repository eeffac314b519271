#pragma once
/// retort's own autocast: a thread-local, nestable RAII guard that the ops in amp/ops.h
/// consult. LibTorch's C++ API has no user-facing autocast, and its internal one changed
/// between 1.13 and 2.x, so this one is ours and behaves the same on both.
///
///   {
///     amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
///     auto logits = model->forward(x);        // amp::linear etc. run in bf16
///     auto loss = amp::cross_entropy(logits, y);   // fp32
///   }                                         // weight-cast cache cleared here
///
/// An inner guard overrides the outer one (enabled flag, dtype and device type alike) and
/// restores it on exit. Only tensors whose device type is the guard's are cast.
#include <torch/torch.h>

#include <cstdint>

namespace retort::amp {

struct AmpOptions;

class Autocast {
 public:
  /// dtype: kBFloat16 (CPU or CUDA) or kHalf (CUDA only). Throws ConfigError for fp16 on
  /// CPU, another dtype or another device type. A disabled guard still nests: it turns
  /// autocast off inside its scope.
  Autocast(bool enabled, torch::ScalarType dtype = torch::kBFloat16, torch::DeviceType device = torch::kCPU);
  /// Enabled for amp.mode autocast and master (master mode still needs the fp32 policy for
  /// norms, softmax and losses), with amp.dtype.
  Autocast(const AmpOptions& options, torch::DeviceType device);
  ~Autocast();

  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool prev_enabled_;
  torch::ScalarType prev_dtype_;
  torch::DeviceType prev_device_;
};

/// State of the innermost guard on this thread (off when there is none).
bool is_enabled();
torch::ScalarType current_dtype();
torch::DeviceType current_device_type();

/// Casts `t` to `dtype` when autocast is on, `t` is a floating tensor (not fp64) on the
/// guard's device type and not already `dtype`; otherwise returns `t` itself. fp32 leaf
/// tensors that require grad (weights) cast to the low dtype are cached once per
/// outermost autocast region; the cast stays differentiable.
torch::Tensor cast(const torch::Tensor& t, torch::ScalarType dtype);

/// Counters of the casts made on this thread, for tests and benchmarks.
struct CastCacheStats {
  int64_t casts = 0;     ///< weights cast and stored in the cache (misses)
  int64_t hits = 0;      ///< uses served from the cache
  int64_t size = 0;      ///< entries held now
  int64_t uncached = 0;  ///< other tensors cast (activations): a copy each
};
CastCacheStats cast_cache_stats();
void reset_cast_cache_stats();

}  // namespace retort::amp
