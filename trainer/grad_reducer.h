#pragma once
/// Data-parallel gradient averaging the way PyTorch's DDP does it: parameters packed into
/// buckets in reverse registration order (the order backward produces their gradients),
/// each bucket all-reduced from an autograd hook as soon as its last gradient is
/// accumulated, so communication overlaps the rest of backward. The last bucket, which has
/// nothing left to overlap, uses the communicator's blocking all_reduce (faster over MPI).
///
///   GradReducerOptions options;                             // bucket_mb 25, op kSum
///   GradReducer reducer(model->named_parameters().pairs(), comm, options);
///   broadcast_parameters_and_buffers(*model, *comm);       // same start on every rank
///   for (micro = 0; micro < accum; ++micro) {
///     reducer.set_sync(micro + 1 == accum);                 // communicate once per step
///     (loss * local_b / global_b).backward();               // hooks launch buckets
///   }
///   reducer.finish();                                       // waits, writes .grad back
///   optimizer.step();
///
/// Averaging: with ReduceOp::kSum (default) the caller scales each rank's mean loss by
/// local_batch / global_batch, so the sum over ranks is the global-batch mean even with
/// uneven shards. ReduceOp::kAvg divides the sum by the world size instead (right when
/// every rank has the same batch size and uses its plain mean loss).
///
/// Gradients live in the buckets (DDP's gradient_as_bucket_view): after the first
/// synchronised backward each parameter's .grad is a slot of its bucket's buffer, so
/// backward accumulates into the bucket and nothing is copied in or out. Replacing a
/// .grad (zero_grad with set_to_none, say) is allowed: the next hook copies it in once.
///
/// With a world of one nothing is copied or communicated: the hooks only record which
/// parameters got a gradient, so an unused parameter fails the same way as on many ranks.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "launch/communicator.h"

namespace retort::trainer {

struct GradReducerOptions {
  /// Bucket capacity in MiB (ddp.bucket_mb). A bucket closes once it reaches this size, so
  /// one large parameter may make a bucket on its own.
  double bucket_mb = 25.0;
  /// The first bucket (the last layers, whose gradients come first) is small so that
  /// communication starts early (DDP uses 1 MiB); never larger than bucket_mb.
  double first_bucket_mb = 1.0;
  /// false: a parameter without a gradient in a synchronised backward is an error naming
  /// it. true: it is reduced as zeros (its .grad becomes the other ranks' sum).
  bool find_unused = false;
  /// kSum or kAvg (see above).
  launch::ReduceOp op = launch::ReduceOp::kSum;
};

/// One bucket of the assignment (for tests and logs).
struct BucketInfo {
  std::vector<size_t> params;  ///< indices into the constructor's list, in bucket order
  int64_t numel = 0;
  int64_t bytes = 0;
  torch::ScalarType dtype = torch::kFloat;
};

struct GradReducerStats {
  int64_t syncs = 0;                   ///< finish() calls that communicated
  int64_t buckets_in_backward = 0;     ///< all-reduces launched from hooks during backward
  int64_t buckets_at_finish = 0;       ///< launched by finish() (unused parameters)
  int64_t bytes = 0;                   ///< bytes all-reduced
  double wait_seconds = 0;             ///< time finish() spent waiting for the non-blocking all-reduces
                                       ///< (the last bucket's blocking one runs in its hook)
};

/// Bucket assignment of `params` (all on one device; requires_grad ones only are passed
/// in): reverse order, grouped by dtype, first bucket of each dtype `first_bytes`, the
/// others `bytes`. Exposed for tests.
std::vector<BucketInfo> assign_buckets(const std::vector<torch::Tensor>& params, int64_t first_bytes, int64_t bytes);

class GradReducer {
 public:
  /// `params`: (name, tensor) pairs; those without requires_grad are skipped. All
  /// parameters must be on the communicator's device. Throws ConfigError for bad
  /// options, Error for duplicate parameters or a device mismatch.
  GradReducer(const std::vector<std::pair<std::string, torch::Tensor>>& params,
              std::shared_ptr<launch::Communicator> comm, GradReducerOptions options = {});
  /// Removes the hooks.
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  /// false: the next backward passes only accumulate into .grad (no communication, and
  /// finish() does nothing); true (default): the next backward reduces everything
  /// accumulated so far.
  void set_sync(bool sync);
  bool sync() const { return sync_; }

  /// After a synchronised backward: launches buckets not yet launched (unused parameters,
  /// when tolerated), waits for all of them and copies the results into .grad. Throws
  /// Error naming the parameters that got no gradient (find_unused=false); the reducer is
  /// ready for the next backward either way.
  void finish();

  const std::vector<BucketInfo>& buckets() const { return buckets_; }
  const std::vector<std::string>& names() const { return names_; }
  const GradReducerStats& stats() const { return stats_; }
  void reset_stats() { stats_ = GradReducerStats(); }

  struct Core;  // shared with the autograd hooks

 private:
  std::shared_ptr<Core> core_;
  std::vector<BucketInfo> buckets_;
  std::vector<std::string> names_;
  GradReducerStats stats_;
  bool sync_ = true;
};

/// Overwrites every parameter and buffer of `module` (recursively) with rank `root`'s,
/// first checking that all ranks have the same names, shapes and dtypes (Error naming
/// the mismatch otherwise). Call once before training.
void broadcast_parameters_and_buffers(torch::nn::Module& module, launch::Communicator& comm, int root = 0);

}  // namespace retort::trainer
