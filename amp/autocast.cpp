#include "amp/autocast.h"

#include <cstddef>
#include <functional>
#include <string>
#include <unordered_map>

#include "amp/options.h"
#include "core/error.h"

namespace retort::amp {
namespace {

// Like PyTorch's cached_casts: a weight used several times in one forward (tied
// embeddings, a shared layer, the teacher and student sharing a projection) is cast once.
// Keyed by the source TensorImpl, the target dtype and the grad mode: a cast made under
// no_grad has no grad_fn and must not be reused where gradients are wanted.
struct CacheKey {
  const c10::TensorImpl* impl;
  torch::ScalarType dtype;
  bool grad_mode;
  bool operator==(const CacheKey& o) const { return impl == o.impl && dtype == o.dtype && grad_mode == o.grad_mode; }
};

struct CacheKeyHash {
  std::size_t operator()(const CacheKey& k) const {
    return std::hash<const void*>()(k.impl) ^ (static_cast<std::size_t>(k.dtype) << 1) ^ (k.grad_mode ? 0x9e37u : 0u);
  }
};

struct CacheEntry {
  torch::Tensor source;  // held so that the address cannot be reused by another tensor
  int64_t version;       // an in-place update of the weight (optimizer step) invalidates
  torch::Tensor cast;
};

struct State {
  bool enabled = false;
  torch::ScalarType dtype = torch::kBFloat16;
  torch::DeviceType device = torch::kCPU;
  int depth = 0;
  std::unordered_map<CacheKey, CacheEntry, CacheKeyHash> cache;
  int64_t casts = 0;
  int64_t hits = 0;
  int64_t uncached = 0;
};

thread_local State g_state;

bool is_low_precision(torch::ScalarType t) { return t == torch::kBFloat16 || t == torch::kHalf; }

void check_guard_args(torch::ScalarType dtype, torch::DeviceType device) {
  if (device != torch::kCPU && device != torch::kCUDA) {
    throw ConfigError("amp::Autocast: device type " + c10::DeviceTypeName(device) + " is not supported; use CPU or CUDA");
  }
  if (!is_low_precision(dtype)) {
    throw ConfigError(std::string("amp::Autocast: dtype ") + c10::toString(dtype) +
                      " is not a low-precision type; use bf16 (BFloat16) or fp16 (Half)");
  }
  if (dtype == torch::kHalf && device == torch::kCPU) {
    throw ConfigError(
        "amp.dtype=fp16: fp16 autocast is not supported on CPU (LibTorch has no CPU fp16 matmul or "
        "log_softmax kernels); use bf16 (amp.dtype=bf16)");
  }
}

}  // namespace

Autocast::Autocast(bool enabled, torch::ScalarType dtype, torch::DeviceType device)
    : prev_enabled_(g_state.enabled), prev_dtype_(g_state.dtype), prev_device_(g_state.device) {
  // A disabled guard accepts any dtype: it only has to switch autocast off.
  if (enabled) check_guard_args(dtype, device);
  g_state.enabled = enabled;
  g_state.dtype = dtype;
  g_state.device = device;
  ++g_state.depth;
}

Autocast::Autocast(const AmpOptions& options, torch::DeviceType device)
    : Autocast(options.mode != AmpMode::kOff, options.dtype, device) {}

Autocast::~Autocast() {
  g_state.enabled = prev_enabled_;
  g_state.dtype = prev_dtype_;
  g_state.device = prev_device_;
  if (--g_state.depth == 0) g_state.cache.clear();
}

bool is_enabled() { return g_state.enabled; }
torch::ScalarType current_dtype() { return g_state.dtype; }
torch::DeviceType current_device_type() { return g_state.device; }

torch::Tensor cast(const torch::Tensor& t, torch::ScalarType dtype) {
  State& s = g_state;
  if (!s.enabled || !t.defined() || t.device().type() != s.device) return t;
  const auto from = t.scalar_type();
  if (from == dtype || !t.is_floating_point() || from == torch::kDouble) return t;

  const bool cacheable = dtype == s.dtype && from == torch::kFloat && t.is_leaf() && t.requires_grad() && !t.is_view();
  if (!cacheable) {
    ++s.uncached;
    return t.to(dtype);
  }

  const CacheKey key{t.unsafeGetTensorImpl(), dtype, torch::GradMode::is_enabled()};
  const auto version = static_cast<int64_t>(t._version());
  auto it = s.cache.find(key);
  if (it != s.cache.end() && it->second.version == version) {
    ++s.hits;
    return it->second.cast;
  }
  auto out = t.to(dtype);
  s.cache[key] = CacheEntry{t, version, out};
  ++s.casts;
  return out;
}

CastCacheStats cast_cache_stats() {
  return CastCacheStats{g_state.casts, g_state.hits, static_cast<int64_t>(g_state.cache.size()), g_state.uncached};
}

void reset_cast_cache_stats() {
  g_state.casts = 0;
  g_state.hits = 0;
  g_state.uncached = 0;
}

}  // namespace retort::amp
