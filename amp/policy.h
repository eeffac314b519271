#pragma once
/// The autocast op policy: which precision each op of amp/ops.h computes in. This table is
/// the one place that decides it.
///
///   auto args = amp::autocast_inputs(amp::Op::kLinear, {x, w, b});   // cast per policy
///   amp::policy_of(amp::Op::kSoftmax) == amp::CastPolicy::kFp32;
///
/// kLowerPrecision: inputs cast to the autocast dtype; these are the matmul-like ops that
///   tensor cores (and AMX / bf16 BLAS on CPU) speed up and whose fp32 accumulation the
///   kernels keep internally.
/// kFp32: inputs cast to fp32, so outputs are fp32; reductions, exponentials and losses
///   lose too much in 8 mantissa bits (bf16) or overflow at 65504 (fp16).
/// kFp32Stats: the data keeps its dtype, parameters and running statistics are cast to
///   fp32; the kernel accumulates the statistics in fp32 and returns the data's dtype. Batch
///   norm: LibTorch's CPU kernel and cuDNN both take bf16/fp16 input with fp32 weights (as
///   under PyTorch's CUDA autocast), so the activations between two convolutions, most of a
///   CNN's training memory, stay in the low dtype instead of being widened and saved in fp32.
/// kPromote: inputs cast to the widest floating type among them, so mixing a low and an
///   fp32 tensor never silently drops precision.
/// kFp32OnCpu: inputs cast to fp32 under a CPU guard, left as they come under a CUDA one.
///   For GPT-2's tanh GELU, whose bf16 kernel in LibTorch's CPU build is slower than casting
///   to fp32 and back (bench/RESULTS.md, "Framework overhead"), where CUDA's is fast.
/// With autocast off, or for tensors on another device type than the guard's, nothing is
/// cast. fp64 and non-floating tensors are never cast.
#include <torch/torch.h>

#include <cstddef>
#include <vector>

namespace retort::amp {

enum class CastPolicy { kLowerPrecision, kFp32, kFp32Stats, kPromote, kFp32OnCpu };

enum class Op {
  kLinear, kMatmul, kBmm, kAddmm, kBaddbmm, kConv2d, kAttentionScores,
  kSoftmax, kLogSoftmax, kLayerNorm, kGroupNorm, kBatchNorm, kExp, kLog, kPow, kSum, kMean, kNorm,
  kCrossEntropy, kMseLoss, kCosineLoss,
  kAdd, kCat, kStack,
  kGelu,
  kCount
};

struct OpPolicy {
  Op op;
  const char* name;
  CastPolicy policy;
};

// clang-format off
inline constexpr OpPolicy kOpPolicies[] = {
  // op                      name                  policy
  {Op::kLinear,            "linear",             CastPolicy::kLowerPrecision},
  {Op::kMatmul,            "matmul",             CastPolicy::kLowerPrecision},
  {Op::kBmm,               "bmm",                CastPolicy::kLowerPrecision},
  {Op::kAddmm,             "addmm",              CastPolicy::kLowerPrecision},
  {Op::kBaddbmm,           "baddbmm",            CastPolicy::kLowerPrecision},
  {Op::kConv2d,            "conv2d",             CastPolicy::kLowerPrecision},
  {Op::kAttentionScores,   "attention_scores",   CastPolicy::kLowerPrecision},

  {Op::kSoftmax,           "softmax",            CastPolicy::kFp32},
  {Op::kLogSoftmax,        "log_softmax",        CastPolicy::kFp32},
  {Op::kLayerNorm,         "layer_norm",         CastPolicy::kFp32},
  {Op::kGroupNorm,         "group_norm",         CastPolicy::kFp32},
  {Op::kBatchNorm,         "batch_norm",         CastPolicy::kFp32Stats},  // data first
  {Op::kExp,               "exp",                CastPolicy::kFp32},
  {Op::kLog,               "log",                CastPolicy::kFp32},
  {Op::kPow,               "pow",                CastPolicy::kFp32},
  {Op::kSum,               "sum",                CastPolicy::kFp32},
  {Op::kMean,              "mean",               CastPolicy::kFp32},
  {Op::kNorm,              "norm",               CastPolicy::kFp32},
  {Op::kCrossEntropy,      "cross_entropy",      CastPolicy::kFp32},
  {Op::kMseLoss,           "mse_loss",           CastPolicy::kFp32},
  {Op::kCosineLoss,        "cosine_loss",        CastPolicy::kFp32},

  {Op::kAdd,               "add",                CastPolicy::kPromote},
  {Op::kCat,               "cat",                CastPolicy::kPromote},
  {Op::kStack,             "stack",              CastPolicy::kPromote},

  {Op::kGelu,              "gelu",               CastPolicy::kFp32OnCpu},
};
// clang-format on

constexpr bool policy_rows_follow_enum() {
  for (std::size_t i = 0; i < sizeof(kOpPolicies) / sizeof(kOpPolicies[0]); ++i) {
    if (static_cast<std::size_t>(kOpPolicies[i].op) != i) return false;
  }
  return sizeof(kOpPolicies) / sizeof(kOpPolicies[0]) == static_cast<std::size_t>(Op::kCount);
}
static_assert(policy_rows_follow_enum(), "kOpPolicies needs one row per amp::Op, in enum order");

constexpr const OpPolicy& policy_entry(Op op) { return kOpPolicies[static_cast<std::size_t>(op)]; }
constexpr CastPolicy policy_of(Op op) { return policy_entry(op).policy; }
constexpr const char* op_name(Op op) { return policy_entry(op).name; }
const char* policy_name(CastPolicy policy);

/// The inputs of `op` cast as its policy says under this thread's autocast state (the
/// same tensors when autocast is off). Undefined tensors stay undefined.
std::vector<torch::Tensor> autocast_inputs(Op op, torch::TensorList inputs);

/// Batch norm updates its running statistics in place; where autocast cast them (a model
/// converted wholesale to the low dtype) the update landed in `used`, the cast copy, and
/// is copied back into `original` here.
void write_back_statistics(const torch::Tensor& original, const torch::Tensor& used);

/// The dtype `op` casts its floating inputs to under the current state: the autocast
/// dtype, kFloat, or the widest floating type among `inputs` on the guard's device type
/// (kFp32OnCpu under a CUDA guard: the first eligible input's own dtype).
torch::ScalarType target_dtype(Op op, torch::TensorList inputs);

}  // namespace retort::amp
