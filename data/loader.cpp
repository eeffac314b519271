#include "data/loader.h"

#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include <c10/core/DeviceGuard.h>

#include "core/error.h"
#include "data/text_windows.h"

namespace retort::data {

LoaderOptions make_loader_options(const DataOptions& opts, torch::Device device, uint64_t seed) {
  opts.validate();
  LoaderOptions o;
  if (!opts.text()) {
    const PixelStats stats = pixel_stats(opts.name);
    o.mean = stats.mean;
    o.stddev = stats.stddev;
  }
  o.augment = opts.augment;
  o.mixup = opts.mixup;
  o.prefetch = opts.prefetch;
  o.device = device;
  o.seed = seed;
  return o;
}

torch::Tensor normalize(const torch::Tensor& x_u8, double mean, double stddev, bool pinned) {
  auto out = torch::empty(x_u8.sizes(), torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(pinned));
  out.copy_(x_u8);
  // One fused pass: x * (1 / (255 std)) - mean / std == (x / 255 - mean) / std.
  out.mul_(1.0 / (255.0 * stddev)).sub_(mean / stddev);
  return out;
}

CropFlip augment_params(uint64_t seed, int64_t epoch, int64_t index, int64_t crop_pad, bool hflip) {
  // A domain constant keeps this stream apart from the sampler's permutation stream.
  constexpr uint64_t kAugmentDomain = 0x61756720686f7073ULL;
  SplitMix64 rng(mix64(mix64(seed ^ kAugmentDomain) ^ static_cast<uint64_t>(epoch)) ^
                 mix64(static_cast<uint64_t>(index)));
  CropFlip p;
  const auto span = static_cast<uint64_t>(2 * crop_pad + 1);
  p.dy = static_cast<int64_t>(rng.below(span));
  p.dx = static_cast<int64_t>(rng.below(span));
  p.flip = hflip && (rng.next() >> 63) != 0;
  return p;
}

torch::Tensor augment(const torch::Tensor& x, const std::vector<int64_t>& indices, uint64_t seed, int64_t epoch,
                      int64_t crop_pad, bool hflip) {
  TORCH_CHECK(x.dim() == 4, "augment: expected [b, C, H, W], got ", x.sizes());
  TORCH_CHECK(static_cast<int64_t>(indices.size()) == x.size(0), "augment: ", indices.size(),
              " indices for a batch of ", x.size(0));
  TORCH_CHECK(crop_pad >= 0, "augment: crop_pad must be >= 0, got ", crop_pad);
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if ((crop_pad == 0 && !hflip) || b == 0) return x;
  const int64_t hp = h + 2 * crop_pad, wp = w + 2 * crop_pad;

  // Per-sample choices on the host (b values), everything per-pixel in tensor ops.
  auto dy = torch::empty({b, 1}, torch::kInt64), dx = torch::empty({b, 1}, torch::kInt64);
  auto flip = torch::empty({b, 1}, torch::kBool);
  int64_t* dy_p = dy.data_ptr<int64_t>();
  int64_t* dx_p = dx.data_ptr<int64_t>();
  bool* flip_p = flip.data_ptr<bool>();
  for (int64_t i = 0; i < b; ++i) {
    const CropFlip p = augment_params(seed, epoch, indices[i], crop_pad, hflip);
    dy_p[i] = p.dy;
    dx_p[i] = p.dx;
    flip_p[i] = p.flip;
  }
  const auto j = torch::arange(w, torch::kInt64).unsqueeze(0);              // [1, W]
  const auto rows = dy + torch::arange(h, torch::kInt64).unsqueeze(0);      // [b, H]
  const auto cols = dx + torch::where(flip, (w - 1) - j, j);                // [b, W], mirrored when flipped
  const auto flat = (rows.unsqueeze(2) * wp + cols.unsqueeze(1))            // [b, H, W]
                        .view({b, 1, h * w})
                        .expand({b, c, h * w});
  const auto padded = torch::constant_pad_nd(x, {crop_pad, crop_pad, crop_pad, crop_pad}, 0);  // [b, C, Hp, Wp]
  return padded.view({b, c, hp * wp}).gather(2, flat).view({b, c, h, w});
}

namespace {

/// Uniform in the open interval (0, 1), from the top 53 bits.
double uniform01(SplitMix64& rng) { return (static_cast<double>(rng.next() >> 11) + 0.5) * 0x1.0p-53; }

/// log of a Gamma(shape, 1) variate, shape > 0 (Marsaglia and Tsang, 2000; for shape < 1 a
/// Gamma(shape + 1) variate times U^(1 / shape), kept in logs so tiny shapes cannot underflow).
double log_gamma_variate(SplitMix64& rng, double shape) {
  double boost = 0.0;
  if (shape < 1.0) {
    boost = std::log(uniform01(rng)) / shape;
    shape += 1.0;
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    // A standard normal by Box-Muller.
    const double z = std::sqrt(-2.0 * std::log(uniform01(rng))) * std::cos(2.0 * M_PI * uniform01(rng));
    const double t = 1.0 + c * z;
    if (t <= 0.0) continue;
    const double v = t * t * t;
    if (std::log(uniform01(rng)) < 0.5 * z * z + d - d * v + d * std::log(v)) return std::log(d * v) + boost;
  }
}

}  // namespace

double sample_symmetric_beta(SplitMix64& rng, double alpha) {
  if (!(alpha > 0.0) || !std::isfinite(alpha)) {
    throw ConfigError("mixup: alpha must be a positive finite number, got " + std::to_string(alpha));
  }
  // G1 / (G1 + G2) = 1 / (1 + exp(log G2 - log G1)).
  const double a = log_gamma_variate(rng, alpha), b = log_gamma_variate(rng, alpha);
  return 1.0 / (1.0 + std::exp(b - a));
}

MixParams mixup_params(uint64_t seed, int64_t epoch, int64_t first_index, int64_t b, double alpha) {
  if (b < 0) throw Error("mixup_params: batch size must be >= 0, got " + std::to_string(b));
  // Its own domain constant: independent of the sampler's and the augmentation's streams.
  constexpr uint64_t kMixupDomain = 0x6d69787570206c61ULL;
  SplitMix64 rng(mix64(mix64(seed ^ kMixupDomain) ^ static_cast<uint64_t>(epoch)) ^
                 mix64(static_cast<uint64_t>(first_index)));
  MixParams p;
  p.lam = sample_symmetric_beta(rng, alpha);
  p.perm.resize(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) p.perm[static_cast<size_t>(i)] = i;
  for (int64_t i = b - 1; i > 0; --i) {  // Fisher-Yates
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(p.perm[static_cast<size_t>(i)], p.perm[static_cast<size_t>(j)]);
  }
  return p;
}

namespace {

// Token windows: inputs and next-token targets, nothing to normalise or augment.
Batch make_text_batch(const TextWindows& windows, const DistributedSampler::Shard& shard, int64_t epoch,
                      const LoaderOptions& options) {
  auto [x, y] = windows.batch(shard.indices, epoch);
  Batch batch;
  const bool pinned = options.device.is_cuda();
  batch.x = pinned ? x.pin_memory() : x;
  batch.y = pinned ? y.pin_memory() : y;
  batch.global_batch_size = shard.global_batch_size;
  batch.step_in_epoch = shard.step_in_epoch;
  batch.index = torch::tensor(shard.indices, torch::kInt64);
  return batch;
}

}  // namespace

Batch make_batch(const Dataset& dataset, const DistributedSampler::Shard& shard, int64_t epoch,
                 const LoaderOptions& options) {
  if (dataset.text) return make_text_batch(*dataset.text, shard, epoch, options);
  const int64_t n = dataset.size();
  const auto b = static_cast<int64_t>(shard.indices.size());
  for (int64_t i : shard.indices) {
    if (i < 0 || i >= n) {
      throw DataError("loader: sample index " + std::to_string(i) + " is outside the dataset of " +
                      std::to_string(n) + " samples");
    }
  }
  const bool pinned = options.device.is_cuda();
  const auto idx = torch::from_blob(const_cast<int64_t*>(shard.indices.data()), {b}, torch::kInt64);
  auto x = dataset.images.index_select(0, idx);  // [b, C, H, W] uint8
  if (options.augment) x = augment(x, shard.indices, options.seed, epoch, options.crop_pad, options.hflip);

  Batch batch;
  batch.x = normalize(x, options.mean, options.stddev, pinned);
  batch.y = torch::empty({b}, torch::TensorOptions().dtype(torch::kInt64).pinned_memory(pinned));
  torch::index_select_out(batch.y, dataset.labels, 0, idx);
  // A bad label would surface later as an opaque loss error (a device assert on CUDA).
  const int64_t* y = batch.y.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    if (y[i] < 0 || y[i] >= dataset.num_classes) {
      throw DataError("loader: label " + std::to_string(y[i]) + " of sample " + std::to_string(shard.indices[i]) +
                      " is outside [0, " + std::to_string(dataset.num_classes) + ")");
    }
  }
  if (options.mixup > 0 && b > 0) {
    const MixParams m = mixup_params(options.seed, epoch, shard.indices.front(), b, options.mixup);
    const auto perm = torch::tensor(m.perm, torch::kInt64);
    // Into the (pinned) buffer itself: x = lam * x + (1 - lam) * x[perm]. The partners are
    // gathered first, in a statement of their own, before x is scaled.
    const auto partners = batch.x.index_select(0, perm);
    batch.x.mul_(m.lam).add_(partners, 1.0 - m.lam);
    batch.y_mix = torch::empty({b}, torch::TensorOptions().dtype(torch::kInt64).pinned_memory(pinned));
    torch::index_select_out(batch.y_mix, batch.y, 0, perm);
    batch.lam = m.lam;
  }
  batch.global_batch_size = shard.global_batch_size;
  batch.step_in_epoch = shard.step_in_epoch;
  return batch;
}

// ---------------------------------------------------------------------------------------
// Loader
// ---------------------------------------------------------------------------------------

struct Loader::Impl {
  /// What the worker hands over: a batch, an error, or (neither) the end of the epoch.
  struct Item {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };

  Impl(const Dataset& d, DistributedSampler& s, LoaderOptions o)
      : dataset(d), sampler(s), ahead(s), options(std::move(o)), epoch(s.epoch()) {}

  Item produce() {
    Item item;
    try {
      if (auto shard = ahead.next()) item.batch = make_batch(dataset, *shard, epoch, options);
    } catch (...) {
      item.error = std::current_exception();
    }
    return item;
  }

  // Holds up to `prefetch` finished batches while it prepares one more. It leaves
  // at::set_num_threads alone: with the OpenMP backend that also sets the process-wide
  // default that other threads pick up lazily, and the batch ops are small.
  void run() {
    // Pinned allocations need a CUDA context: make it the training device's, or every
    // rank of a node would open one on GPU 0 (what PyTorch's pin-memory thread avoids).
    std::optional<c10::DeviceGuard> guard;
    if (options.device.is_cuda() && options.device.has_index()) guard.emplace(options.device);
    for (;;) {
      Item item = produce();
      const bool last = !item.batch;
      {
        std::unique_lock<std::mutex> lock(mu);
        not_full.wait(lock, [&] { return stop || static_cast<int64_t>(queue.size()) < options.prefetch; });
        if (stop) return;
        queue.push_back(std::move(item));
      }
      not_empty.notify_one();
      if (last) return;
    }
  }

  Dataset dataset;                // tensors shared, not copied
  DistributedSampler& sampler;    // advanced as batches are handed out
  DistributedSampler ahead;       // the worker's copy, advanced as batches are prepared
  LoaderOptions options;
  int64_t epoch;

  std::mutex mu;
  std::condition_variable not_full, not_empty;
  std::deque<Item> queue;
  bool stop = false;
  std::thread worker;

  bool finished = false;          // end of epoch or error seen by next()
  std::exception_ptr error;
};

namespace {

void check_images(const Dataset& dataset) {
  if (!dataset.images.defined() || dataset.images.dim() != 4 || dataset.images.scalar_type() != torch::kUInt8) {
    throw DataError("loader: dataset images must be a [N, C, H, W] uint8 tensor");
  }
  if (!dataset.labels.defined() || dataset.labels.dim() != 1 || dataset.labels.scalar_type() != torch::kInt64 ||
      dataset.labels.size(0) != dataset.size()) {
    throw DataError("loader: dataset labels must be an int64 [N] tensor with N = " + std::to_string(dataset.size()));
  }
  if (!dataset.images.device().is_cpu() || !dataset.labels.device().is_cpu()) {
    throw DataError("loader: dataset tensors must be on the CPU (batches are moved to options.device)");
  }
}

}  // namespace

Loader::Loader(const Dataset& dataset, DistributedSampler& sampler, LoaderOptions options) {
  if (dataset.text) {
    if (options.augment || options.mixup > 0)
      throw ConfigError("data.augment and data.mixup apply to images, not to a language model's token windows");
  } else {
    check_images(dataset);
  }
  if (sampler.dataset_size() != dataset.size()) {
    throw DataError("loader: the sampler covers " + std::to_string(sampler.dataset_size()) +
                    " samples but the dataset has " + std::to_string(dataset.size()));
  }
  if (!(options.stddev > 0)) throw ConfigError("loader: stddev must be > 0, got " + std::to_string(options.stddev));
  if (options.crop_pad < 0) throw ConfigError("loader: crop_pad must be >= 0, got " + std::to_string(options.crop_pad));
  if (options.prefetch < 0) throw ConfigError("loader: prefetch must be >= 0, got " + std::to_string(options.prefetch));
  if (!(options.mixup >= 0) || !std::isfinite(options.mixup)) {
    throw ConfigError("loader: mixup must be a finite number >= 0 (0: off), got " + std::to_string(options.mixup));
  }
  if (options.device.is_cuda() && !torch::cuda::is_available()) {
    throw ConfigError("loader: device " + options.device.str() + " requested but CUDA is not available");
  }
  impl_ = std::make_unique<Impl>(dataset, sampler, std::move(options));
  if (impl_->options.prefetch > 0) impl_->worker = std::thread([impl = impl_.get()] { impl->run(); });
}

Loader::~Loader() {
  if (!impl_ || !impl_->worker.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->not_full.notify_all();
  impl_->worker.join();  // the worker checks `stop` after each batch, so this waits for one at most
}

Loader::Loader(Loader&&) noexcept = default;

Loader& Loader::operator=(Loader&& other) noexcept {
  if (this != &other) {
    Loader dying(std::move(*this));  // joins our old worker
    impl_ = std::move(other.impl_);
  }
  return *this;
}

std::optional<Batch> Loader::next() {
  Impl& im = *impl_;
  if (im.finished) {
    if (im.error) std::rethrow_exception(im.error);
    return std::nullopt;
  }
  Impl::Item item;
  if (im.worker.joinable()) {
    std::unique_lock<std::mutex> lock(im.mu);
    im.not_empty.wait(lock, [&] { return !im.queue.empty(); });
    item = std::move(im.queue.front());
    im.queue.pop_front();
    lock.unlock();
    im.not_full.notify_one();
  } else {
    item = im.produce();
  }
  if (item.error || !item.batch) {
    im.finished = true;
    im.error = item.error;
    if (im.error) std::rethrow_exception(im.error);
    return std::nullopt;
  }

  Batch batch = std::move(*item.batch);
  // Advance the caller's sampler only now, so its state counts batches handed out.
  const auto shard = im.sampler.epoch() == im.epoch ? im.sampler.next() : std::nullopt;
  if (!shard || shard->step_in_epoch != batch.step_in_epoch) {
    im.finished = true;
    im.error = std::make_exception_ptr(
        Error("loader: the sampler was advanced or reset while a Loader was reading it"));
    std::rethrow_exception(im.error);
  }
  if (!im.options.device.is_cpu()) {
    // Issued on the caller's current stream: from pinned memory the copy is asynchronous
    // and ordered before the compute that uses it, and the caching host allocator keeps
    // the pinned block alive until the copy has finished.
    const bool non_blocking = im.options.device.is_cuda();
    batch.x = batch.x.to(im.options.device, non_blocking);
    batch.y = batch.y.to(im.options.device, non_blocking);
    if (batch.y_mix.defined()) batch.y_mix = batch.y_mix.to(im.options.device, non_blocking);
  }
  return batch;
}

// ---------------------------------------------------------------------------------------
// EvalLoader
// ---------------------------------------------------------------------------------------

namespace {
LoaderOptions eval_options(LoaderOptions o) {
  o.augment = false;
  o.mixup = 0.0;
  return o;
}
}  // namespace

EvalLoader::EvalLoader(const Dataset& dataset, int64_t global_batch, LoaderOptions options, int rank, int world)
    : sampler_(std::make_unique<DistributedSampler>(dataset.size(), global_batch, rank, world, /*seed=*/0,
                                                    /*shuffle=*/false, /*drop_last=*/false)),
      loader_(std::make_unique<Loader>(dataset, *sampler_, eval_options(std::move(options)))) {}

std::optional<Batch> EvalLoader::next() { return loader_->next(); }

}  // namespace retort::data
