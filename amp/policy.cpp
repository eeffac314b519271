#include "amp/policy.h"

#include "amp/autocast.h"

namespace retort::amp {
namespace {

// PyTorch's is_eligible: floating, not fp64 (doubles are asked for on purpose), on the
// guard's device type.
bool eligible(const torch::Tensor& t) {
  return t.defined() && t.is_floating_point() && t.scalar_type() != torch::kDouble &&
         t.device().type() == current_device_type();
}

}  // namespace

const char* policy_name(CastPolicy policy) {
  switch (policy) {
    case CastPolicy::kLowerPrecision: return "lower_precision";
    case CastPolicy::kFp32: return "fp32";
    case CastPolicy::kFp32Stats: return "fp32_stats";
    case CastPolicy::kPromote: return "promote";
    case CastPolicy::kFp32OnCpu: return "fp32_on_cpu";
  }
  return "?";
}

torch::ScalarType target_dtype(Op op, torch::TensorList inputs) {
  switch (policy_of(op)) {
    case CastPolicy::kLowerPrecision: return current_dtype();
    case CastPolicy::kFp32:
    case CastPolicy::kFp32Stats: return torch::kFloat;  // kFp32Stats: of the parameters
    case CastPolicy::kPromote: break;
    case CastPolicy::kFp32OnCpu:
      if (current_device_type() == torch::kCPU) return torch::kFloat;
      for (const auto& t : inputs)
        if (eligible(t)) return t.scalar_type();
      return current_dtype();
  }
  // Start from the autocast dtype, as PyTorch's promote policy does, so that inputs all in
  // the low dtype stay there and one fp32 input lifts every input to fp32.
  torch::ScalarType widest = current_dtype();
  for (const auto& t : inputs) {
    if (eligible(t)) widest = torch::promote_types(widest, t.scalar_type());
  }
  return widest;
}

std::vector<torch::Tensor> autocast_inputs(Op op, torch::TensorList inputs) {
  if (!is_enabled() || (policy_of(op) == CastPolicy::kFp32OnCpu && current_device_type() != torch::kCPU))
    return inputs.vec();
  const torch::ScalarType dtype = target_dtype(op, inputs);
  std::vector<torch::Tensor> out;
  out.reserve(inputs.size());
  // kFp32Stats: the data (first input) stays as it came, uncast; only the rest is fp32.
  const bool keep_data = policy_of(op) == CastPolicy::kFp32Stats;
  for (size_t i = 0; i < inputs.size(); ++i) out.push_back(keep_data && i == 0 ? inputs[i] : cast(inputs[i], dtype));
  return out;
}

void write_back_statistics(const torch::Tensor& original, const torch::Tensor& used) {
  if (original.defined() && !used.is_same(original)) {
    torch::NoGradGuard no_grad;
    original.copy_(used);
  }
}

}  // namespace retort::amp
