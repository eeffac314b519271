#include "quant/calibration.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>

#include "core/error.h"

namespace retort::quant {
namespace {

constexpr int64_t kMinBins = 256;          // fewer bins than uint8 values: coarser than the quantization
constexpr int64_t kMaxBins = 8192;         // kEntropy's search costs bins^2
constexpr int64_t kEntropyMinBins = 128;   // TensorRT's first candidate: 128 of its 2048 bins
constexpr int kLevels = 256;               // uint8 values
constexpr double kEmptyLevelCount = 1e-4;  // ONNX Runtime's smoothing of Q where P has counts
constexpr double kInfinity = std::numeric_limits<double>::infinity();

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

/// Error naming how many NaN and inf values a batch holds.
[[noreturn]] void throw_non_finite(const torch::Tensor& x) {
  const auto nan = torch::isnan(x).sum().item<int64_t>();
  const auto inf = torch::isinf(x).sum().item<int64_t>();
  throw Error("RangeObserver: the activation holds " + std::to_string(nan) + " NaN and " + std::to_string(inf) +
              " inf values (out of " + std::to_string(x.numel()) +
              ", read as float32); calibration needs finite values");
}

}  // namespace

AffineParams affine_uint8(Range r) {
  if (!std::isfinite(r.lo) || !std::isfinite(r.hi) || r.lo > r.hi)
    throw Error("affine_uint8: invalid range [" + number(r.lo) + ", " + number(r.hi) + "]");
  const double lo = std::min(r.lo, 0.0), hi = std::max(r.hi, 0.0);
  // Quantized tensors keep the scale in float32; below its epsilon 1 / scale
  // loses meaning.
  const double scale = std::max((hi - lo) / 255.0, static_cast<double>(std::numeric_limits<float>::epsilon()));
  return {scale, std::clamp<int64_t>(std::llround(-lo / scale), 0, 255)};
}

RangeObserver::RangeObserver(Calibration method, double percentile, int64_t bins)
    : method_(method), percentile_(percentile), bins_(bins) {
  if (!(percentile > 0 && percentile <= 100))
    throw ConfigError("quant.percentile must be in (0, 100], got " + number(percentile));
  if (bins < kMinBins || bins > kMaxBins)
    throw Error("quant::RangeObserver: bins must be in [" + std::to_string(kMinBins) + ", " + std::to_string(kMaxBins) +
                "], got " + std::to_string(bins));
}

double RangeObserver::bin_width() const { return count_ == 0 ? 0.0 : (hi_ - lo_) / static_cast<double>(bins_); }

void RangeObserver::observe(const torch::Tensor& activation) {
  if (!activation.is_floating_point())
    throw Error("RangeObserver: activations must be floating point, got " +
                std::string(c10::toString(activation.scalar_type())));
  const auto x = activation.detach().to(torch::kCPU, torch::kFloat32).contiguous().view(-1);
  if (x.numel() == 0) return;
  const auto [low, high] = torch::aminmax(x);  // NaN propagates to both
  const double batch_min = low.item<double>(), batch_max = high.item<double>();
  if (!std::isfinite(batch_min) || !std::isfinite(batch_max)) throw_non_finite(x);
  if (count_ == 0) {
    start_histogram(batch_min, batch_max);
    min_ = batch_min;
    max_ = batch_max;
  } else {
    if (batch_min < lo_ || batch_max > hi_) widen_histogram(batch_min, batch_max);
    min_ = std::min(min_, batch_min);
    max_ = std::max(max_, batch_max);
  }
  add_to_histogram(x);
  negatives_ += (x < 0).sum().item<int64_t>();
  count_ += x.numel();
}

void RangeObserver::start_histogram(double lo, double hi) {
  counts_.assign(static_cast<size_t>(bins_), 0.0);
  if (hi > lo) {
    lo_ = lo;
    hi_ = hi;
    return;
  }
  // A constant first batch: a narrow span around it, which the first batch with
  // spread widens.
  const double span = lo != 0 ? std::abs(lo) * std::ldexp(1.0, -10) : std::ldexp(1.0, -20);
  lo_ = lo - span / 2;
  hi_ = lo_ + span;
}

void RangeObserver::widen_histogram(double batch_min, double batch_max) {
  const double lo = std::min(min_, batch_min), hi = std::max(max_, batch_max), width = bin_width();
  for (int k = 0;; ++k) {
    const double wide = std::ldexp(width, k);
    // The new span starts `shift` new bins below the old one, a whole number so
    // that the old bin edges stay on the new grid; its spare bins go where the
    // data grew.
    const double shift_min = std::ceil((lo_ - lo) / wide);
    const double shift_max = std::floor((lo_ - hi) / wide + static_cast<double>(bins_));
    if (shift_min > shift_max) continue;
    const bool down = batch_min<lo_, up = batch_max> hi_;
    const auto shift =
        static_cast<int64_t>(down == up ? std::floor((shift_min + shift_max) / 2) : (down ? shift_max : shift_min));
    // Old bins outside [lo, hi] are empty; the clamp only guards against
    // rounding.
    std::vector<double> merged(counts_.size(), 0.0);
    for (int64_t i = 0; i < bins_; ++i)
      if (counts_[i] > 0) merged[std::clamp<int64_t>(shift + (i >> k), 0, bins_ - 1)] += counts_[i];
    counts_ = std::move(merged);
    lo_ -= static_cast<double>(shift) * wide;
    hi_ = lo_ + static_cast<double>(bins_) * wide;
    return;
  }
}

void RangeObserver::add_to_histogram(const torch::Tensor& values) {
  // float64 for the bin positions: float32 loses bins where the span is narrow
  // far from 0.
  auto bin = values.to(torch::kFloat64);
  bin.sub_(lo_).mul_(static_cast<double>(bins_) / (hi_ - lo_)).floor_().clamp_(0, static_cast<double>(bins_ - 1));
  const auto counts = torch::bincount(bin.to(torch::kLong), values.ne(0).to(torch::kFloat64), bins_);
  const auto c = counts.accessor<double, 1>();
  double nonzero = 0;
  for (int64_t i = 0; i < bins_; ++i) {
    counts_[i] += c[i];
    nonzero += c[i];
  }
  zeros_ += values.numel() - std::llround(nonzero);
}

Range RangeObserver::range() const {
  if (count_ == 0)
    throw Error("RangeObserver: no values observed; observe calibration batches before asking for a range");
  if (min_ == max_) return {min_, max_};
  switch (method_) {
    case Calibration::kMinMax:
      return {min_, max_};
    case Calibration::kPercentile:
      return percentile_range();
    case Calibration::kEntropy:
      return entropy_range();
  }
  throw Error("RangeObserver: unknown calibration method");
}

double RangeObserver::value_at_rank(double rank) const {
  // The negatives come first, then the zeros (kept apart from the histogram),
  // then the rest.
  const auto negatives = static_cast<double>(negatives_), zeros = static_cast<double>(zeros_);
  if (rank <= negatives) return std::min(0.0, nonzero_value_at_rank(rank));
  if (rank <= negatives + zeros) return 0.0;
  return std::max(0.0, nonzero_value_at_rank(rank - zeros));
}

double RangeObserver::nonzero_value_at_rank(double rank) const {
  // The values inside a bin taken as evenly spread over it.
  double below = 0;
  for (int64_t i = 0; i < bins_; ++i) {
    if (counts_[i] > 0 && below + counts_[i] >= rank)
      return lo_ + (static_cast<double>(i) + (rank - below) / counts_[i]) * bin_width();
    below += counts_[i];
  }
  return max_;
}

Range RangeObserver::percentile_range() const {
  if (percentile_ == 100) return {min_, max_};
  const double n = static_cast<double>(count_);
  double lo = value_at_rank((100 - percentile_) / 100 * n), hi = value_at_rank(percentile_ / 100 * n);
  if (lo > hi) std::swap(lo, hi);  // p < 50 names the upper percentile first
  return {std::clamp(lo, min_, max_), std::clamp(hi, min_, max_)};
}

Range RangeObserver::entropy_range() const {
  const double width = bin_width();
  const double t_max = std::max(std::abs(min_), std::abs(max_));
  // Narrower clips are not tried: over a few bins P and Q agree whatever the
  // data.
  const double min_span = static_cast<double>(kEntropyMinBins) * width;
  std::vector<double> thresholds{t_max};
  for (int64_t j = 0; j <= bins_; ++j) {
    const double t = std::abs(lo_ + static_cast<double>(j) * width);
    if (t < t_max && std::min(max_, t) - std::max(min_, -t) >= min_span) thresholds.push_back(t);
  }
  std::sort(thresholds.begin(), thresholds.end());
  thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());

  std::vector<double> below(counts_.size() + 1,
                            0.0);  // below[i]: the counts of bins [0, i)
  for (size_t i = 0; i < counts_.size(); ++i) below[i + 1] = below[i] + counts_[i];
  double best = kInfinity, best_t = t_max;
  for (const double t : thresholds) {
    const double kl = clip_divergence({std::max(min_, -t), std::min(max_, t)}, below);
    if (kl < best) {
      best = kl;
      best_t = t;
    }
  }
  return {std::max(min_, -best_t), std::min(max_, best_t)};
}

double RangeObserver::clip_divergence(Range clip, const std::vector<double>& below) const {
  if (!(clip.lo < clip.hi)) return kInfinity;
  const double width = bin_width(), total = below.back();
  // The bins the clip range touches, [a, b).
  const auto a = std::clamp<int64_t>(static_cast<int64_t>(std::floor((clip.lo - lo_) / width)), 0, bins_ - 1);
  const auto b = std::clamp<int64_t>(static_cast<int64_t>(std::ceil((clip.hi - lo_) / width)), a + 1, bins_);
  const double inside = below[b] - below[a];
  if (inside <= 0) return kInfinity;
  const double grid_lo = std::min(0.0, clip.lo), step = (std::max(0.0, clip.hi) - grid_lo) / (kLevels - 1);
  const auto level = [&](int64_t i) {
    const double centre = lo_ + (static_cast<double>(i) + 0.5) * width;
    return std::clamp<int64_t>(std::llround((centre - grid_lo) / step), 0, kLevels - 1);
  };
  // P's counts: those outside [a, b) folded into its edge bins.
  const auto p = [&](int64_t i) {
    return counts_[i] + (i == a ? below[a] : 0.0) + (i == b - 1 ? total - below[b] : 0.0);
  };
  std::array<double, kLevels> level_count{}, level_bins{};
  for (int64_t i = a; i < b; ++i) {
    level_count[level(i)] += counts_[i];
    if (p(i) > 0) level_bins[level(i)] += 1;
  }
  double kl = 0;
  for (int64_t i = a; i < b; ++i) {
    const double pi = p(i);
    if (pi == 0) continue;
    const auto l = level(i);
    const double qi = std::max(level_count[l] / level_bins[l], kEmptyLevelCount);
    kl += pi / total * std::log((pi / total) / (qi / inside));
  }
  return kl;
}

}  // namespace retort::quant
