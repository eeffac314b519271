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
/// With a world of one nothing is communicated, and without fp32 accumulation (below)
/// nothing is copied: the hooks only record which parameters got a gradient, so an unused
/// parameter fails the same way as on many ranks.
///
/// Gradients that accumulate in fp32 (amp.mode=master): with `grads_into`, parameter i's
/// gradient is added, as it arrives, to the .grad of grads_into[i] (its fp32 master) and
/// its own low-precision .grad is dropped, in every micro-batch (Megatron's main_grad,
/// Apex's master grads). Buckets then hold fp32, so every backend reduces in fp32 and
/// micro-batches add up without rounding to the low dtype in between.
///
/// Buckets are rebuilt once, after the first synchronised backward, in the order the
/// gradients became ready there (rank 0's order, as DDP's rebuild_buckets): a bucket
/// order that does not follow backward holds complete buckets back behind incomplete ones.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
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
  /// it. true: it is reduced as zeros, so it gets the sum of the ranks that used it; one
  /// that no rank used in the whole step keeps no gradient (undefined .grad), so the
  /// optimizer skips it, as PyTorch's DDP leaves it (no weight decay, no momentum).
  bool find_unused = false;
  /// kSum or kAvg (see above).
  launch::ReduceOp op = launch::ReduceOp::kSum;
  /// Re-bucket once after the first synchronised backward, in the order gradients became
  /// ready (see above).
  bool rebuild_buckets = true;
  /// The keys ddp.bucket_mb and ddp.find_unused (the rest are not config keys).
  static void declare(config::Fields<GradReducerOptions>& f);
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
  /// Buckets whose last gradient arrived while an earlier bucket was still incomplete, so
  /// their all-reduce waited (launches go in bucket order on every rank).
  int64_t buckets_held_back = 0;
  int64_t rebuilds = 0;                ///< bucket assignments rebuilt from the ready order
  int64_t bytes = 0;                   ///< bytes all-reduced
  double wait_seconds = 0;             ///< time finish() spent waiting for the non-blocking all-reduces
                                       ///< (the last bucket's blocking one runs in its hook)
};

/// Bucket assignment of `params` (all on one device; requires_grad ones only are passed
/// in), filled in `order` (indices into params, the expected order of readiness; empty:
/// reverse registration order), grouped by dtype, first bucket of each dtype
/// `first_bytes`, the others `bytes`; buckets sorted by when their first parameter is
/// ready. Exposed for tests.
std::vector<BucketInfo> assign_buckets(const std::vector<torch::Tensor>& params, int64_t first_bytes, int64_t bytes,
                                       const std::vector<size_t>& order = {});

class GradReducer {
 public:
  using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
  /// `params`: (name, tensor) pairs; those without requires_grad are skipped. All
  /// parameters must be on the communicator's device. `grads_into` (empty, or one tensor
  /// per entry of `params`, e.g. MasterWeights::master_params(params)): where each
  /// gradient accumulates when it is not the parameter itself (see above). Throws
  /// ConfigError for bad options, Error for duplicate parameters or a device mismatch.
  GradReducer(const NamedTensors& params, std::shared_ptr<launch::Communicator> comm, GradReducerOptions options = {},
              const NamedTensors& grads_into = {});
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

  /// Zeroes every gradient for the next step in place (one fill per bucket; the .grad
  /// tensors stay bucket slots), or drops them where there are no buckets. Use it instead
  /// of the optimizer's zero_grad, whose LibTorch 2.x default drops the slots.
  void zero_grad();

  /// The current assignment (rebuilt once after the first synchronised backward).
  std::vector<BucketInfo> buckets() const;
  const std::vector<std::string>& names() const { return names_; }
  const GradReducerStats& stats() const;
  void reset_stats();

  struct Core;  // shared with the autograd hooks

 private:
  std::shared_ptr<Core> core_;
  std::vector<std::string> names_;
  bool sync_ = true;
};

/// Overwrites every parameter and buffer of `module` (recursively) with rank `root`'s,
/// first checking that all ranks have the same names, shapes and dtypes (Error naming
/// the mismatch otherwise). Call once before training.
void broadcast_parameters_and_buffers(torch::nn::Module& module, launch::Communicator& comm, int root = 0);

/// Overwrites every buffer of `module` (batch norm's running statistics) with rank
/// `root`'s: DDP's broadcast_buffers, for batch norm without cross-rank statistics. The
/// structure was checked by broadcast_parameters_and_buffers.
void broadcast_buffers(torch::nn::Module& module, launch::Communicator& comm, int root = 0);

}  // namespace retort::trainer
