#pragma once
/// fp32 master weights for amp.mode=master (Apex O2 style): the model's weights live in
/// the low dtype, so forward and backward read half the bytes, while the optimizer steps
/// on an fp32 copy, so small updates are not rounded away.
///
///   amp::MasterWeights master(*model, amp::MasterWeightsOptions().dtype(torch::kBFloat16));
///   torch::optim::AdamW optimizer(master.parameters(), options);
///   scaler.set_named_parameters(master.named_parameters());
///   ...
///   { amp::Autocast guard(true, torch::kBFloat16, device); loss = ...; }
///   scaler.scale(loss).backward();
///   master.copy_grads_to_master();     // low grads -> fp32 master .grad
///   scaler.unscale(optimizer);         // clipping etc. on the masters
///   if (scaler.step(optimizer)) master.copy_master_to_model();
///   scaler.update();
///   master.zero_grad();
///
/// With a gradient reducer, trainer::GradReducer(params, comm, options,
/// master.master_params(params)) adds each low-precision gradient into its master's fp32
/// .grad as it arrives (what the trainer does), and copy_grads_to_master() is not needed.
///
/// Normalization layers (torch::nn BatchNorm, InstanceNorm, LayerNorm, GroupNorm, and
/// modules the keep_fp32 predicate selects) keep fp32 parameters when keep_norm_fp32 is
/// set: they are tiny, their statistics are computed in fp32 under autocast anyway
/// (amp/policy.h), and their scale/shift are the parameters most hurt by bf16's 8-bit
/// mantissa. Their master is the parameter itself. Buffers (BatchNorm running statistics) are never converted.
/// Run the forward under an enabled amp::Autocast: it is what casts activations between
/// the low-precision matmuls and the fp32 norms, softmax and losses.
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace retort::amp {

struct MasterWeightsOptions {
  using KeepFp32 = std::function<bool(const std::string& module_name, const torch::nn::Module& module)>;
  /// The model's dtype: kBFloat16 or kHalf.
  TORCH_ARG(torch::ScalarType, dtype) = torch::kBFloat16;
  TORCH_ARG(bool, keep_norm_fp32) = true;
  /// More modules whose own parameters stay fp32 (a custom RMSNorm, say); name is dotted.
  TORCH_ARG(KeepFp32, keep_fp32) = nullptr;
};

class MasterWeights {
 public:
  using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

  /// Converts `model`'s floating parameters in place (same tensors, new data) and makes
  /// the fp32 masters. Shared parameters get one master. Throws Error for a dtype other
  /// than bf16 / fp16.
  explicit MasterWeights(torch::nn::Module& model, MasterWeightsOptions options = {});
  MasterWeights(torch::nn::Module& model, torch::ScalarType dtype, bool keep_norm_fp32 = true);

  /// The fp32 tensors to build the optimizer over, in model->parameters() order.
  std::vector<torch::Tensor> parameters() const;
  /// Dotted parameter names with their masters (GradScaler names, clipping, logging).
  NamedTensors named_parameters() const;
  /// Names of the parameters kept in fp32 (norm layers).
  std::vector<std::string> fp32_parameter_names() const;
  /// `params` with each converted model parameter replaced by its master; others (kept
  /// fp32, or not in the model: a distillation projection) stay as they are. The list to
  /// build the optimizer over when the trainer's parameters go beyond the model.
  NamedTensors master_params(const NamedTensors& params) const;

  /// Copies each low-precision gradient into its master's fp32 .grad (a parameter without
  /// a gradient leaves its master without one, so the optimizer skips it).
  void copy_grads_to_master();
  /// Rounds the masters into the low-precision model parameters (after optimizer.step()).
  void copy_master_to_model();
  /// Drops the gradients of the converted model parameters (the optimizer's zero_grad()
  /// clears the masters').
  void zero_model_grads();
  /// Drops the gradients of the model parameters and of the masters.
  void zero_grad();

  torch::ScalarType dtype() const { return options_.dtype(); }

  /// name -> fp32 master (a copy). Keys are the model's dotted parameter names.
  std::map<std::string, torch::Tensor> state_dict() const;
  /// Loads the masters and rounds them into the model. CheckpointError naming the key for a
  /// missing, unexpected or mis-shaped entry; nothing is changed then.
  void load_state_dict(const std::map<std::string, torch::Tensor>& state);

 private:
  struct Entry {
    std::string name;
    torch::Tensor param;   // the model's parameter (low dtype when converted)
    torch::Tensor master;  // fp32; the parameter itself when not converted
    bool converted;
  };
  void collect(const std::string& prefix, torch::nn::Module& module, bool keep);

  MasterWeightsOptions options_;
  std::vector<Entry> entries_;
  std::unordered_set<const c10::TensorImpl*> seen_;
};

/// Whether `module` is one of LibTorch's normalization layers.
bool is_norm_module(const torch::nn::Module& module);

}  // namespace retort::amp
