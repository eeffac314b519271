#include "launch/nccl_communicator.h"

#if RETORT_HAVE_CUDA
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/error.h"
#include "launch/cuda_compat.h"
#include "launch/mpi_detail.h"

namespace retort::launch {
namespace {

using Clock = std::chrono::steady_clock;

void check_cuda(cudaError_t rc, const char* call) {
  if (rc != cudaSuccess) throw CommError(std::string(call) + " failed: " + cudaGetErrorString(rc));
}

void check_nccl(ncclResult_t rc, const char* call) {
  if (rc != ncclSuccess) throw CommError(std::string(call) + " failed: " + ncclGetErrorString(rc));
}

ncclDataType_t nccl_type(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat: return ncclFloat32;
    case torch::kDouble: return ncclFloat64;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kHalf: return ncclFloat16;
    case torch::kInt: return ncclInt32;
    case torch::kLong: return ncclInt64;
    case torch::kChar: return ncclInt8;
    case torch::kByte:
    case torch::kBool: return ncclUint8;
    default:
      throw CommError(std::string("NcclCommunicator: dtype ") + c10::toString(dtype) +
                      " is not supported (float32, float64, bfloat16, float16, int8/32/64, uint8, bool)");
  }
}

// One collective in flight: its completion event and what the watchdog reports.
struct NcclOp {
  cudaEvent_t done = nullptr;
  std::string kind;
  int64_t seq = 0;
  int64_t bytes = 0;
  std::string dtype;
  Clock::time_point issued;
  Clock::time_point deadline;
  ~NcclOp() {
    if (done) cudaEventDestroy(done);  // legal while pending: released once it completes
  }
};

}  // namespace

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  int rank = 0;
  int size = 1;
  int device = 0;
  NcclOptions options;
  std::optional<c10::cuda::CUDAStream> stream;
  cudaEvent_t ready = nullptr;  // reused: a wait captures the event's state when queued
  std::mutex issue_mu;          // keeps this rank's issue order when hooks run on several threads
  int64_t seq = 0;
#if RETORT_HAVE_MPI
  MPI_Comm mpi_comm = MPI_COMM_NULL;
  std::unique_ptr<detail::SequenceBoard> board;
#endif
  std::vector<std::string> hosts;  // World::hosts(), for timeout messages

  // Watchdog.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::shared_ptr<NcclOp>> pending;
  bool stop = false;
  std::thread watchdog;

  std::shared_ptr<NcclOp> enqueue(std::string kind, const torch::Tensor& described,
                                  const std::vector<torch::Tensor>& used, const std::function<ncclResult_t()>& launch);
  void watch();
  [[noreturn]] void timeout(const NcclOp& op);
};

std::shared_ptr<NcclOp> NcclCommunicator::Impl::enqueue(std::string kind, const torch::Tensor& described,
                                                        const std::vector<torch::Tensor>& used,
                                                        const std::function<ncclResult_t()>& launch) {
  auto op = std::make_shared<NcclOp>();
  op->kind = std::move(kind);
  op->bytes = described.defined() ? static_cast<int64_t>(described.numel() * described.element_size()) : 0;
  op->dtype = described.defined() ? c10::toString(described.scalar_type()) : "none";
  c10::cuda::CUDAGuard guard(compat::device_index(device));
  {
    std::lock_guard<std::mutex> lock(issue_mu);
    const auto current = compat::current_stream(device);
    // The NCCL stream starts the collective only after what the caller queued so far
    // (the gradient this bucket holds, typically): an event, not a host sync.
    check_cuda(cudaEventRecord(ready, current.stream()), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream->stream(), ready, 0), "cudaStreamWaitEvent");
    for (const auto& t : used) compat::record_stream(t, *stream);
    op->seq = ++seq;
#if RETORT_HAVE_MPI
    if (board) board->publish(op->seq);
#endif
    check_nccl(launch(), ("nccl " + op->kind).c_str());
    check_cuda(cudaEventCreateWithFlags(&op->done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    check_cuda(cudaEventRecord(op->done, stream->stream()), "cudaEventRecord");
  }
  op->issued = Clock::now();
  op->deadline = op->issued + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_s));
  {
    std::lock_guard<std::mutex> lock(mu);
    pending.push_back(op);
  }
  cv.notify_one();
  return op;
}

void NcclCommunicator::Impl::watch() {
  cudaSetDevice(device);
  std::unique_lock<std::mutex> lock(mu);
  for (;;) {
    cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop; });
    if (stop) return;
    ncclResult_t async_error = ncclSuccess;
    ncclCommGetAsyncError(comm, &async_error);
    if (async_error != ncclSuccess && async_error != ncclInProgress) {
      const std::string message = std::string("NCCL failed asynchronously: ") + ncclGetErrorString(async_error);
      ncclCommAbort(comm);
      abort_all(kExitOther, message);
    }
#if RETORT_HAVE_MPI
    if (board) {
      std::lock_guard<std::mutex> mpi_lock(detail::mpi_mutex());
      board->serve();  // a peer that timed out asks how far this rank got
    }
#endif
    const auto now = Clock::now();
    std::shared_ptr<NcclOp> overdue;
    std::vector<std::shared_ptr<NcclOp>> still;
    for (auto& op : pending) {
      if (cudaEventQuery(op->done) == cudaSuccess) continue;
      if (now > op->deadline && !overdue) overdue = op;
      still.push_back(op);
    }
    pending.swap(still);
    if (overdue) {
      lock.unlock();
      timeout(*overdue);
    }
  }
}

void NcclCommunicator::Impl::timeout(const NcclOp& op) {
  const double waited = std::chrono::duration<double>(Clock::now() - op.issued).count();
  std::string missing;
#if RETORT_HAVE_MPI
  if (board) {
    std::lock_guard<std::mutex> lock(detail::mpi_mutex());
    missing = detail::describe_missing(board->read_all(/*wait_s=*/5.0), op.seq, hosts);
  }
#endif
  char head[64];
  std::snprintf(head, sizeof head, "%.1f s", waited);
  std::string message = "collective timed out: nccl " + op.kind + " #" + std::to_string(op.seq) + " (" +
                        std::to_string(op.bytes) + " bytes of " + op.dtype + ") has not completed " + head +
                        " after it was issued (ddp.timeout_s=" + c10::str(options.timeout_s) + "); ";
  message += missing.empty() ? "every rank issued it, so the ranks disagree on the order or sizes of their "
                               "collectives, or a GPU or the network stalled"
                             : "ranks that never issued it: " + missing;
  ncclCommAbort(comm);  // frees the GPU kernels spinning on the peers
  abort_all(kExitOther, message);
}

// ------------------------------------------------------------------------------------

namespace {

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclOp> op, int device) : op_(std::move(op)), device_(device) {}
  void wait() override {
    // Later work on the caller's stream runs after the collective; the host goes on.
    c10::cuda::CUDAGuard guard(compat::device_index(device_));
    check_cuda(cudaStreamWaitEvent(compat::current_stream(device_).stream(), op_->done, 0), "cudaStreamWaitEvent");
  }
  bool done() override { return cudaEventQuery(op_->done) == cudaSuccess; }

 private:
  std::shared_ptr<NcclOp> op_;
  int device_;
};

}  // namespace

NcclCommunicator::NcclCommunicator(World& world, torch::Device device, NcclOptions options)
    : impl_(std::make_shared<Impl>()) {
  if (!device.is_cuda()) throw CommError("NcclCommunicator needs a CUDA device, got " + device.str());
  if (!(options.timeout_s > 0))
    throw ConfigError("ddp.timeout_s must be > 0, got " + std::to_string(options.timeout_s));
  auto& d = *impl_;
  d.options = options;
  d.rank = world.rank();
  d.hosts = world.hosts();
  d.size = world.size();
  d.device = device.has_index() ? device.index() : 0;
  c10::cuda::CUDAGuard guard(compat::device_index(d.device));

  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  if (d.rank == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  if (d.size > 1) {
#if RETORT_HAVE_MPI
    if (!world.uses_mpi()) throw CommError("NcclCommunicator: a world of several ranks needs MPI");
    std::lock_guard<std::mutex> lock(detail::mpi_mutex());
    detail::check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &d.mpi_comm), "MPI_Comm_dup");
    detail::check_mpi(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, d.mpi_comm), "MPI_Bcast of the ncclUniqueId");
    d.board = std::make_unique<detail::SequenceBoard>(d.mpi_comm);
#else
    throw CommError("NcclCommunicator: a world of several ranks needs MPI, and this retort was built without it");
#endif
  }
  check_nccl(ncclCommInitRank(&d.comm, d.size, id, d.rank), "ncclCommInitRank");
  d.stream = compat::stream_from_pool(d.device);
  check_cuda(cudaEventCreateWithFlags(&d.ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  Impl* impl = impl_.get();
  d.watchdog = std::thread([impl] { impl->watch(); });
}

NcclCommunicator::~NcclCommunicator() {
  auto& d = *impl_;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    d.stop = true;
  }
  d.cv.notify_one();
  if (d.watchdog.joinable()) d.watchdog.join();
  const bool unwinding = std::uncaught_exceptions() > 0;
  if (unwinding) {
    ncclCommAbort(d.comm);  // local: never waits for peers that may not come
  } else {
    cudaStreamSynchronize(d.stream->stream());
    ncclCommDestroy(d.comm);
  }
  cudaEventDestroy(d.ready);
#if RETORT_HAVE_MPI
  if (d.board) {
    std::lock_guard<std::mutex> lock(detail::mpi_mutex());
    if (unwinding) {
      (void)d.board.release();
    } else {
      d.board.reset();
      MPI_Comm_free(&d.mpi_comm);
    }
  }
#endif
}

int NcclCommunicator::rank() const { return impl_->rank; }
int NcclCommunicator::size() const { return impl_->size; }
torch::Device NcclCommunicator::device() const { return torch::Device(torch::kCUDA, compat::device_index(impl_->device)); }

namespace {

void check_cuda_tensor(const torch::Tensor& t, int device, const std::string& what, bool in_place) {
  if (!t.defined()) throw CommError("NcclCommunicator." + what + ": tensor is undefined");
  if (!t.is_cuda() || t.device().index() != device)
    throw CommError("NcclCommunicator." + what + ": tensor is on " + t.device().str() + ", the communicator on cuda:" +
                    std::to_string(device));
  if (in_place && !t.is_contiguous())
    throw CommError("NcclCommunicator." + what + ": tensor of shape " + c10::str(t.sizes()) +
                    " is not contiguous; collectives work in place on contiguous tensors");
}

}  // namespace

std::shared_ptr<Work> NcclCommunicator::all_reduce_async(torch::Tensor tensor, ReduceOp op) {
  const std::string kind = std::string("all_reduce(") + to_string(op) + ")";
  check_cuda_tensor(tensor, impl_->device, kind, true);
  const auto dtype = tensor.scalar_type();
  ncclRedOp_t nccl_op = ncclSum;
  if (op == ReduceOp::kAvg) nccl_op = ncclAvg;
  if (op == ReduceOp::kMax) nccl_op = ncclMax;
  if (op == ReduceOp::kMin) nccl_op = ncclMin;
  if (dtype == torch::kBool && (op == ReduceOp::kSum || op == ReduceOp::kAvg))
    throw CommError("NcclCommunicator." + kind + ": not defined for bool; use max (any rank) or min (every rank)");
  if (op == ReduceOp::kAvg && !torch::isFloatingType(dtype))
    throw CommError("NcclCommunicator." + kind + ": not defined for " + c10::toString(dtype) +
                    " (integer division would truncate); use sum and divide");
  const ncclDataType_t type = nccl_type(dtype);
  auto* d = impl_.get();
  void* data = tensor.data_ptr();
  const size_t count = static_cast<size_t>(tensor.numel());
  auto op_state = d->enqueue(kind, tensor, {tensor}, [&] {
    return ncclAllReduce(data, data, count, type, nccl_op, d->comm, d->stream->stream());
  });
  return std::make_shared<NcclWork>(std::move(op_state), d->device);
}

std::shared_ptr<Work> NcclCommunicator::broadcast_async(torch::Tensor tensor, int root) {
  const std::string kind = "broadcast(root " + std::to_string(root) + ")";
  if (root < 0 || root >= impl_->size)
    throw CommError("NcclCommunicator.broadcast: root " + std::to_string(root) + " outside a world of " +
                    std::to_string(impl_->size));
  check_cuda_tensor(tensor, impl_->device, kind, true);
  const ncclDataType_t type = nccl_type(tensor.scalar_type());
  auto* d = impl_.get();
  void* data = tensor.data_ptr();
  const size_t count = static_cast<size_t>(tensor.numel());
  auto op_state = d->enqueue(kind, tensor, {tensor}, [&] {
    return ncclBroadcast(data, data, count, type, root, d->comm, d->stream->stream());
  });
  return std::make_shared<NcclWork>(std::move(op_state), d->device);
}

torch::Tensor NcclCommunicator::all_gather(const torch::Tensor& tensor) {
  check_cuda_tensor(tensor, impl_->device, "all_gather", false);
  auto* d = impl_.get();
  c10::cuda::CUDAGuard guard(compat::device_index(d->device));
  auto send = tensor.contiguous();
  std::vector<int64_t> shape{d->size};
  shape.insert(shape.end(), tensor.sizes().begin(), tensor.sizes().end());
  auto out = torch::empty(shape, tensor.options());  // [size, ...tensor.shape]
  const ncclDataType_t type = nccl_type(tensor.scalar_type());
  const size_t count = static_cast<size_t>(send.numel());
  auto op_state = d->enqueue("all_gather", tensor, {send, out}, [&] {
    return ncclAllGather(send.data_ptr(), out.data_ptr(), count, type, d->comm, d->stream->stream());
  });
  NcclWork(std::move(op_state), d->device).wait();
  return out;
}

void NcclCommunicator::barrier() {
  c10::cuda::CUDAGuard guard(compat::device_index(impl_->device));
  auto token = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt).device(device()));
  all_reduce_async(token, ReduceOp::kSum)->wait();
  // The only host synchronisation here: a barrier must hold the host back. The watchdog
  // still ends the job if a peer never comes.
  check_cuda(cudaStreamSynchronize(compat::current_stream(impl_->device).stream()), "cudaStreamSynchronize");
}

}  // namespace retort::launch
#endif
