#include "launch/communicator.h"

#include <cstring>

#include "core/error.h"

namespace retort::launch {
namespace {

class DoneWork final : public Work {
 public:
  void wait() override {}
  bool done() override { return true; }
};

}  // namespace

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

void Communicator::broadcast_string(std::string& text, int root) {
  // Through the backend's device (NCCL takes CUDA tensors only); the bytes end on the host.
  auto len = torch::full({1}, static_cast<int64_t>(text.size()), torch::TensorOptions().dtype(torch::kInt64).device(device()));
  broadcast(len, root);
  const int64_t n = len.item<int64_t>();
  auto buf = torch::empty({n}, torch::kUInt8);
  if (rank() == root) std::memcpy(buf.data_ptr(), text.data(), text.size());
  if (!device().is_cpu()) buf = buf.to(device());
  broadcast(buf, root);
  if (rank() != root) {
    buf = buf.cpu();
    text.assign(reinterpret_cast<const char*>(buf.data_ptr()), n);
  }
}

void Communicator::all_reduce_staged(torch::Tensor& tensor, ReduceOp op) {
  if (tensor.device() == device() && tensor.is_contiguous()) {
    all_reduce(tensor, op);
    return;
  }
  auto staged = tensor.to(device()).contiguous();
  all_reduce(staged, op);
  // On the current stream, after the collective (wait() ordered it); a blocking copy to the
  // host returns once the value is there.
  tensor.copy_(staged);
}

std::shared_ptr<Work> LocalCommunicator::all_reduce_async(torch::Tensor, ReduceOp) {
  return std::make_shared<DoneWork>();
}

std::shared_ptr<Work> LocalCommunicator::broadcast_async(torch::Tensor, int root) {
  if (root != 0) throw CommError("broadcast root " + std::to_string(root) + " outside a world of 1");
  return std::make_shared<DoneWork>();
}

torch::Tensor LocalCommunicator::all_gather(const torch::Tensor& tensor) { return tensor.unsqueeze(0).clone(); }

}  // namespace retort::launch
