#pragma once
/// Which samples each rank trains on, step by step, reproducibly and resumably.
///   data::DistributedSampler sampler(train.size(), /*global_batch=*/128, rank, world, seed);
///   for (int64_t e = sampler.epoch(); e < epochs; sampler.set_epoch(++e))
///     while (auto shard = sampler.next()) { ... shard->indices ... }
///
/// Global batches are independent of the world size: every epoch a permutation of
/// [0, N) is drawn from (seed, epoch) alone; global batch k is perm[k*B, (k+1)*B);
/// rank r of w takes the contiguous slice [k*B + r*b/w, k*B + (r+1)*b/w) of it (b = this
/// global batch's size, integer division so shards differ by at most one sample). So
/// the union of the ranks' shards at step k is exactly the single-process batch k, and a
/// checkpoint taken with one world size resumes with another.
/// The permutation comes from a self-contained generator (splitmix64 + Fisher-Yates), not
/// from torch's, so the order is the same on every platform and LibTorch version.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace retort::data {

class DistributedSampler {
 public:
  /// ConfigError: dataset_size or global_batch < 1, world < 1, rank outside [0, world),
  /// global_batch < world (a rank would get no samples), drop_last leaving no batch.
  DistributedSampler(int64_t dataset_size, int64_t global_batch, int rank = 0, int world = 1,
                     uint64_t seed = 0, bool shuffle = true, bool drop_last = false);

  struct Shard {
    std::vector<int64_t> indices;  ///< this rank's sample indices, in batch order
    int64_t global_batch_size;     ///< samples in this step over all ranks (the last may be short)
    int64_t step_in_epoch;         ///< k, counted from 0
  };
  /// This rank's part of the next global batch; nullopt once the epoch is exhausted, and
  /// again on every call until set_epoch() starts another: the epoch never advances by
  /// itself, so the caller sees the boundary (and a checkpoint taken there says so).
  /// In the last batch of an epoch with drop_last=false, b may be smaller than the world,
  /// and then some ranks get empty shards: weight losses by global_batch_size.
  std::optional<Shard> next();

  /// Starts epoch `epoch` (>= 0) from its first batch.
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  int64_t batches_per_epoch() const;
  /// Global batches already handed out this epoch.
  int64_t cursor() const { return cursor_; }
  bool exhausted() const { return cursor_ >= batches_per_epoch(); }

  int64_t dataset_size() const { return dataset_size_; }
  int64_t global_batch() const { return global_batch_; }
  int rank() const { return rank_; }
  int world() const { return world_; }
  uint64_t seed() const { return seed_; }

  /// The whole epoch order (the permutation, or 0..N-1 without shuffle). [N]
  const std::vector<int64_t>& order() const;

  /// Keys: epoch, cursor, seed, dataset_size, global_batch, shuffle, drop_last (int64
  /// scalars; the seed's 64 bits stored as int64). Rank and world are not stored: the
  /// batches do not depend on them.
  std::map<std::string, torch::Tensor> state_dict() const;
  /// Restores epoch and cursor. DataError when a key is missing or malformed, or when
  /// seed, dataset_size, global_batch, shuffle or drop_last differ from this sampler's.
  void load_state_dict(const std::map<std::string, torch::Tensor>& state);

 private:
  int64_t dataset_size_;
  int64_t global_batch_;
  int rank_;
  int world_;
  uint64_t seed_;
  bool shuffle_;
  bool drop_last_;
  int64_t epoch_ = 0;
  int64_t cursor_ = 0;
  // Shared, so copying a sampler (the Loader's worker does) does not copy the order.
  mutable std::shared_ptr<const std::vector<int64_t>> order_;
  mutable int64_t order_epoch_ = -1;
};

/// The epoch permutation alone: a function of (n, seed, epoch). [n]
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

/// 64-bit mixing (splitmix64's finalizer), used to derive every random stream from keys.
uint64_t mix64(uint64_t x);

/// splitmix64: a tiny generator whose output depends only on its seed, on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() { return mix64(state_ += 0x9e3779b97f4a7c15ULL); }
  /// Uniform in [0, range), range >= 1, unbiased (Lemire's multiply-and-reject).
  uint64_t below(uint64_t range);

 private:
  uint64_t state_;
};

}  // namespace retort::data
