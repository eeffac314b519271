#pragma once
/// Collectives over NCCL for CUDA tensors, ordered with LibTorch's streams by events.
///
///   auto comm = launch::make_communicator(world, torch::Device(torch::kCUDA, world.local_rank()));
///   auto work = comm->all_reduce_async(bucket, launch::ReduceOp::kSum);
///   work->wait();   // the current stream waits for the reduction; the host does not
///
/// Design:
/// - The ncclUniqueId is made by rank 0 and broadcast over MPI; every rank then joins
///   with ncclCommInitRank (blocks until all ranks have joined).
/// - Each collective runs on the communicator's own high-priority stream, after the work
///   already queued on the caller's current stream (an event recorded there and waited
///   on by the NCCL stream). Its tensor is recorded with the caching allocator for the
///   NCCL stream, so freeing it on the caller's side cannot hand the memory out early.
/// - wait() makes the caller's current stream wait for the collective's completion
///   event: no host synchronisation in the hot path. done() queries that event.
///   barrier() is the one call that blocks the host.
/// - Watchdog: a thread polls the completion events and NCCL's asynchronous error; a
///   collective not complete timeout_s after it was issued aborts the NCCL communicator
///   and ends the job naming it and the ranks that never issued it (as MpiCommunicator).
/// - Dtypes: float32, float64, bfloat16, float16, int8, int32, int64, uint8; bool for
///   max/min. avg uses ncclAvg (floating types only).
/// Built only with RETORT_HAVE_CUDA (LibTorch with CUDA and NCCL found).
#if RETORT_HAVE_CUDA
#include <memory>

#include "launch/communicator.h"
#include "launch/world.h"

namespace retort::launch {

struct NcclOptions {
  double timeout_s = 300.0;  ///< ddp.timeout_s
};

class NcclCommunicator final : public Communicator {
 public:
  /// Collective over the world (a world of one needs no MPI). `device` must be a CUDA
  /// device; two ranks must not share one. Throws CommError on NCCL/MPI failures.
  NcclCommunicator(World& world, torch::Device device, NcclOptions options = {});
  ~NcclCommunicator() override;

  int rank() const override;
  int size() const override;
  std::string backend() const override { return "nccl"; }
  torch::Device device() const override;

  std::shared_ptr<Work> all_reduce_async(torch::Tensor tensor, ReduceOp op) override;
  std::shared_ptr<Work> broadcast_async(torch::Tensor tensor, int root) override;
  /// Ordered on the current stream like wait(); the host does not block.
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  void barrier() override;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace retort::launch
#endif
