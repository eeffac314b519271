#pragma once
/// Collectives over MPI for CPU tensors, non-blocking, with a watchdog.
///
///   launch::World world;
///   launch::MpiCommunicator comm(world);            // MpiOptions{}: timeout_s 300
///   auto work = comm.all_reduce_async(bucket, launch::ReduceOp::kSum);   // MPI_Iallreduce
///   ...                                                                // overlaps this
///   work->wait();
///
/// Design:
/// - Runs on a duplicate of MPI_COMM_WORLD, so its traffic never matches anyone else's.
/// - Progress: Open MPI advances non-blocking collectives only inside MPI calls. A
///   progress thread tests the pending requests (every ~50 us while any is pending, idle
///   otherwise), so a bucket's reduction really runs while backward computes.
/// - Blocking all_reduce runs MPI_Allreduce itself, outside the global MPI lock (at
///   MPI_THREAD_MULTIPLE): Open MPI's blocking algorithms beat its non-blocking ones
///   (libnbc) on small buffers. The progress thread watches its deadline without being
///   woken for it: it looks every min(1 s, timeout_s / 10), also while idle.
/// - Watchdog: the same thread (or wait(), without it) checks each collective against its
///   deadline (issue time + timeout_s). A late collective ends the job through abort_all
///   with its kind, sequence number and size, and the ranks that never issued it: each
///   rank publishes how many collectives it has issued in an MPI window, read on timeout.
/// - Dtypes: float32, float64, int8/16/32/64, uint8 natively; bool for max/min (logical
///   or/and). bfloat16 and float16 are reduced in a float32 copy and rounded back once:
///   MPI has no 16-bit float type, and summing in fp32 is more accurate than a custom
///   bf16 MPI_Op rounding at every step, for twice the bytes on the wire. Broadcast and
///   gather move 16-bit types as raw bits.
/// - avg = sum, then divide by the world size (floating types only).
/// - Thread safety: collectives may be issued from any thread (autograd hooks), but all
///   ranks must issue them in the same order.
#if RETORT_HAVE_MPI
#include <memory>

#include "launch/communicator.h"
#include "launch/world.h"

namespace retort::launch {

struct MpiOptions {
  double timeout_s = 300.0;     ///< ddp.timeout_s
  bool progress_thread = true;  ///< needs MPI_THREAD_SERIALIZED or better (else off)
};

class MpiCommunicator final : public Communicator {
 public:
  /// Collective over the world. Throws CommError when the world was not started by an
  /// MPI launcher, ConfigError for a bad timeout.
  explicit MpiCommunicator(World& world, MpiOptions options = {});
  /// Waits for collectives still pending, then frees the duplicate communicator
  /// (collective). While an exception unwinds it frees nothing and waits for nothing: the
  /// peers may never come, and the job is about to end.
  ~MpiCommunicator() override;

  int rank() const override;
  int size() const override;
  std::string backend() const override { return "mpi"; }

  std::shared_ptr<Work> all_reduce_async(torch::Tensor tensor, ReduceOp op) override;
  /// Blocking MPI_Allreduce in the caller's thread (the watchdog still watches it): faster
  /// than MPI_Iallreduce + wait for a step's gradients (bench/RESULTS.md, "Data parallel:
  /// scaling and the reducer").
  /// Needs MPI_THREAD_MULTIPLE and the progress thread; else the non-blocking path.
  void all_reduce(torch::Tensor tensor, ReduceOp op) override;
  std::shared_ptr<Work> broadcast_async(torch::Tensor tensor, int root) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  void barrier() override;

  /// Collectives issued so far on this rank (the watchdog's sequence number).
  int64_t issued() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace retort::launch
#endif
