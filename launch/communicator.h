#pragma once
/// The collective-communication interface every distributed part talks to. Backends are
/// chosen at run time: LocalCommunicator (one process), MpiCommunicator (CPU tensors),
/// NcclCommunicator (CUDA tensors, built only with CUDA + NCCL).
///   auto work = comm.all_reduce_async(grad_bucket, ReduceOp::kSum);
///   ...  // more backward runs meanwhile
///   work->wait();
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace retort::launch {

enum class ReduceOp { kSum, kAvg, kMax, kMin };
/// "sum", "avg", "max", "min" (for messages).
const char* to_string(ReduceOp op);

/// A pending collective. wait() returns once the result is in the tensor (for NCCL: once
/// the result is ordered before later work on the caller's current stream).
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  /// Non-blocking completion check.
  virtual bool done() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  /// Where tensors given to this communicator must live (CPU unless NCCL).
  virtual torch::Device device() const { return torch::kCPU; }

  /// In place. Tensors must be contiguous and on the backend's device.
  virtual std::shared_ptr<Work> all_reduce_async(torch::Tensor tensor, ReduceOp op) = 0;
  virtual std::shared_ptr<Work> broadcast_async(torch::Tensor tensor, int root) = 0;
  /// Returns a tensor of shape [size(), ...tensor.shape].
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  virtual void barrier() = 0;

  /// Blocking all-reduce; backends override it where a blocking call is faster.
  virtual void all_reduce(torch::Tensor tensor, ReduceOp op) { all_reduce_async(std::move(tensor), op)->wait(); }
  void broadcast(torch::Tensor tensor, int root) { broadcast_async(std::move(tensor), root)->wait(); }
  /// Blocking all-reduce of a small tensor on any device (metrics, flags, the config check):
  /// staged through device() when it lives elsewhere (NCCL reduces only CUDA tensors) and
  /// the result copied back in place. Returns when the value is on the tensor's device.
  void all_reduce_staged(torch::Tensor& tensor, ReduceOp op);
  /// Broadcasts a byte string from `root` (config text, file names).
  void broadcast_string(std::string& text, int root);
};

/// World of one process: every collective is the identity (avg and sum of one value are
/// that value), completed at once.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  std::shared_ptr<Work> all_reduce_async(torch::Tensor tensor, ReduceOp op) override;
  std::shared_ptr<Work> broadcast_async(torch::Tensor tensor, int root) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  void barrier() override {}
};

}  // namespace retort::launch
