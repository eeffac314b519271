#pragma once
/// Batches for training and evaluation, prepared on a background thread.
///   data::Loader loader(train, sampler, data::make_loader_options(opts, device, seed));
///   while (auto batch = loader.next()) { auto logits = model(batch->x); ... }
///   sampler.set_epoch(sampler.epoch() + 1);    // then a new Loader for the next epoch
///
///   data::EvalLoader eval(test, /*global_batch=*/1000, options, rank, world);
///   while (auto batch = eval.next()) { ... }
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "data/idx.h"
#include "data/options.h"
#include "data/sampler.h"

namespace retort::data {

/// What a batch's losses are computed against. Plain: the labels y. With mixup, whose
/// inputs are lam * x + (1 - lam) * x[perm], the targets mix the same way: y with weight
/// lam and the partners' labels y_mix = y[perm] with weight 1 - lam.
struct Labels {
  Labels(torch::Tensor labels) : y(std::move(labels)) {}  // NOLINT(google-explicit-constructor): plain labels
  Labels(torch::Tensor labels, torch::Tensor partner_labels, double weight)
      : y(std::move(labels)), y_mix(std::move(partner_labels)), lam(weight) {}

  torch::Tensor y;      // [b] int64
  torch::Tensor y_mix;  // [b] int64; undefined without mixup
  /// [b] int64: each sample's index in the dataset (text: its window, with
  /// data.windows=blocks its block, which a teacher cache is keyed by); undefined when unknown.
  torch::Tensor index;
  double lam = 1.0;     // the weight of y
  /// Label smoothing eps for losses on these labels: each one-hot target becomes
  /// (1 - eps) one-hot + eps / classes. Set by the trainer (trainer.label_smoothing).
  double smoothing = 0.0;

  bool mixed() const { return y_mix.defined(); }
  Labels smoothed(double eps) const {
    Labels out = *this;
    out.smoothing = eps;
    return out;
  }
  /// A label-based loss under mixup: loss(y) when plain, else
  /// lam * loss(y) + (1 - lam) * loss(y_mix). For cross-entropy this equals the loss on the
  /// mixed one-hot targets (it is linear in the target).
  template <class LossOfLabels>
  torch::Tensor mix(LossOfLabels&& loss) const {
    if (!mixed()) return loss(y);
    return lam * loss(y) + (1.0 - lam) * loss(y_mix);
  }
};

struct Batch {
  torch::Tensor x;           // [b, C, H, W] float32, normalized (and mixed, with mixup)
  torch::Tensor y;           // [b] int64
  torch::Tensor y_mix;       // [b] int64, y[perm]: the mixed-in samples' labels; undefined without mixup
  double lam = 1.0;          // mixup's weight of x and y; 1 without mixup
  int64_t global_batch_size; // samples in this step over all ranks
  int64_t step_in_epoch;
  torch::Tensor index;       // [b] int64: the samples' dataset indices (text batches)

  Labels labels() const {
    Labels l = y_mix.defined() ? Labels(y, y_mix, lam) : Labels(y);
    l.index = index;
    return l;
  }
};

struct LoaderOptions {
  double mean = 0.2860, stddev = 0.3530;  // Fashion-MNIST; see pixel_stats()
  bool augment = false;      // random crop (pad `crop_pad`, zero padding) + horizontal flip
  int64_t crop_pad = 2;
  bool hflip = true;
  int64_t prefetch = 2;      // batches prepared ahead on a background thread; 0: in next()
  torch::Device device = torch::kCPU;  // when CUDA: pinned host memory + non_blocking copy
  uint64_t seed = 0;         // augmentation and mixup seed
  double mixup = 0.0;        // mixup's Beta(alpha, alpha) parameter; 0: off (never on in evaluation)
};

/// mean / stddev of opts.name, augment, mixup and prefetch from opts; device and seed as given.
LoaderOptions make_loader_options(const DataOptions& opts, torch::Device device, uint64_t seed);

/// (x / 255 - mean) / stddev as float32, in pinned memory when `pinned`. [same shape]
torch::Tensor normalize(const torch::Tensor& x_u8, double mean, double stddev, bool pinned = false);

/// One sample's augmentation: the crop window starts at (dy, dx) of the image padded by
/// crop_pad on every side (0 <= dy, dx <= 2 crop_pad); flip mirrors it horizontally.
/// A pure function of its arguments, so any rank, any resume, sees the same choice.
struct CropFlip {
  int64_t dy = 0, dx = 0;
  bool flip = false;
};
CropFlip augment_params(uint64_t seed, int64_t epoch, int64_t index, int64_t crop_pad, bool hflip);

/// Applies augment_params(seed, epoch, indices[i], ...) to sample i of x, in one gather
/// (no per-pixel loops). x: [b, C, H, W] uint8 (any dtype works), indices: b dataset indices.
torch::Tensor augment(const torch::Tensor& x, const std::vector<int64_t>& indices, uint64_t seed, int64_t epoch,
                      int64_t crop_pad, bool hflip);

/// Mixup's draw for one batch (Zhang et al., 2018): the weight lam ~ Beta(alpha, alpha) and
/// the partner of each sample, a permutation of [0, b). A pure function of its arguments, so
/// resume and every rank reproduce it; `first_index` (the batch's first dataset index) keys
/// it, which differs between the ranks' shards of one step. alpha > 0, b >= 0.
struct MixParams {
  double lam = 1.0;
  std::vector<int64_t> perm;
};
MixParams mixup_params(uint64_t seed, int64_t epoch, int64_t first_index, int64_t b, double alpha);

/// A Beta(alpha, alpha) sample from `rng` alone (Marsaglia-Tsang gamma variates), the same on
/// every platform (the standard library's distributions are implementation-defined).
double sample_symmetric_beta(SplitMix64& rng, double alpha);

/// The batch of `shard` on the host (pinned when options.device is CUDA): index_select
/// of the uint8 images, augmentation when options.augment, one conversion to float, then
/// mixup when options.mixup > 0 (x = lam * x + (1 - lam) * x[perm], y_mix = y[perm]).
/// DataError for an index outside the dataset or a label outside [0, num_classes).
Batch make_batch(const Dataset& dataset, const DistributedSampler::Shard& shard, int64_t epoch,
                 const LoaderOptions& options);

/// Prepares the next batches on a background thread while the current one trains.
/// Augmentation randomness is a pure function of (seed, epoch, sample index), not of a
/// running RNG, so resume from a sampler state reproduces the exact same batches.
/// Exceptions on the worker thread are re-thrown from next() (and again on later calls).
/// Destruction joins cleanly even mid-epoch. Iterates one epoch of the sampler: next()
/// returns nullopt at its end.
///
/// The worker reads ahead on its own copy of the sampler; `sampler` itself is advanced in
/// next(), as each batch is handed out, so sampler.state_dict() is always the resume
/// point. Don't call sampler.next() or set_epoch() while a Loader reads it; it must
/// outlive the Loader. ConfigError/DataError from the constructor when the dataset and
/// sampler sizes differ, tensors have the wrong dtype or shape, or options are invalid.
class Loader {
 public:
  Loader(const Dataset& dataset, DistributedSampler& sampler, LoaderOptions options);
  ~Loader();
  Loader(Loader&&) noexcept;
  Loader& operator=(Loader&&) noexcept;
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  std::optional<Batch> next();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Whole-split evaluation batches in order (no shuffle, no augmentation), for eval. With
/// world > 1 each rank gets its contiguous share of every batch, so the ranks' sums add up
/// to the whole split; in a last batch smaller than the world some ranks' batches are empty.
class EvalLoader {
 public:
  EvalLoader(const Dataset& dataset, int64_t global_batch, LoaderOptions options, int rank = 0, int world = 1);
  std::optional<Batch> next();
  int64_t batches() const { return sampler_->batches_per_epoch(); }

 private:
  std::unique_ptr<DistributedSampler> sampler_;  // heap: the Loader keeps a reference
  std::unique_ptr<Loader> loader_;
};

}  // namespace retort::data
