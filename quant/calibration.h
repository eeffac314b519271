#pragma once
/// The int8 range of an activation for static post-training quantization, calibrated from
/// the values it takes over several calibration batches, and its quint8 scale and zero point:
///   quant::RangeObserver observer(quant::Calibration::kEntropy);
///   for (const auto& x : calibration_batches) observer.observe(model.forward(x).hidden.back());
///   const quant::AffineParams q = quant::affine_uint8(observer.range());
/// The methods:
///   kMinMax      the exact min and max of everything observed.
///   kPercentile  the (100 - p)-th and p-th percentiles of all values observed, read from the
///                histogram (linear inside a bin, so within one bin width); p = 100 is kMinMax.
///   kEntropy     TensorRT's KL-divergence calibration (as ONNX Runtime runs it), made affine:
///                among the clip ranges [-t, t] ∩ [min, max] (t at bin edges up to max |x|,
///                the range at least 128 bins wide), the one whose uint8-quantized histogram Q
///                is closest to the clipped histogram P: smallest KL(P || Q). Details at range().
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace retort::quant {

enum class Calibration { kMinMax, kPercentile, kEntropy };

/// The clip range [lo, hi] chosen for an activation's values (it need not
/// contain 0).
struct Range {
  double lo = 0, hi = 0;
};

/// quint8 affine parameters: real = scale * (q - zero_point), q in [0, 255].
struct AffineParams {
  double scale = 1;
  int64_t zero_point = 0;
};

/// Widens r to contain 0 (zero must be exact: padding and ReLU's zeros, as
/// PyTorch and ONNX Runtime require) and maps it onto [0, 255]. The scale is at
/// least float32's epsilon, as in PyTorch's observers, so a degenerate range
/// [0, 0] gets that scale and zero point 0. Error on a non-finite range or lo >
/// hi.
AffineParams affine_uint8(Range r);

/// Watches one activation over calibration batches in a single pass: the exact
/// min and max, the count of exact zeros and of negatives, and a histogram of
/// the other values in `bins` equal bins whose span grows when a batch falls
/// outside it. Growing shifts the span by whole bins or multiplies the bin
/// width by 2^k, on a grid aligned with the old one, so that every old bin
/// lands whole in one new bin: the counts are then exactly those of binning
/// every value at the final width. The approximation (as in PyTorch's
/// HistogramObserver) is that width: set by the widest batches, never finer,
/// and up to about twice (max - min) / bins, the spare bins on the side the
/// data grew towards.
class RangeObserver {
 public:
  /// percentile in (0, 100] (kPercentile's p; 99.99 is the usual choice), bins
  /// in [256, 8192] (kEntropy's search costs bins^2); ConfigError naming
  /// quant.percentile, or Error for the bins, otherwise.
  explicit RangeObserver(Calibration method, double percentile = 99.99, int64_t bins = 2048);

  /// Adds a batch's values: any shape, any floating dtype or device (read as
  /// float32 on the CPU). Error on NaN or inf (counted after the conversion to
  /// float32), leaving the observer as it was; an empty tensor adds nothing.
  void observe(const torch::Tensor& activation);

  /// The method's clip range, within [min, max] of what was observed. Error if
  /// nothing was. kPercentile: percentiles below 50 swap ends, so lo <= hi.
  /// kEntropy: exact zeros (ReLU's, padding's) quantize exactly in every
  /// candidate range, so they are left out; their spike in one bin would
  /// otherwise decide the divergence. For a candidate t, P is the histogram
  /// over the clip range's bins with the counts outside folded into its two
  /// edge bins. Q holds the counts inside the range only (so clipping shows as
  /// mass P has and Q lacks at the edges, as in TensorRT), merged by the uint8
  /// value each bin's centre quantizes to on affine_uint8's grid for that range
  /// (256 values over the range widened to 0: all of them for a ReLU's [0, t],
  /// about 128 a side for [-t, t]; the grid the range will be used with) and
  /// spread back evenly over each value's bins that P fills. A bin P fills and
  /// Q leaves empty gets 1e-4 of a count in Q (ONNX Runtime's smoothing) rather
  /// than an infinite divergence. Costs O(bins^2).
  Range range() const;

  /// Values observed so far.
  int64_t count() const { return count_; }

  /// The histogram's bin width now (0 before any value): kPercentile's and
  /// kEntropy's resolution.
  double bin_width() const;

  Calibration method() const { return method_; }

 private:
  void start_histogram(double lo, double hi);
  void widen_histogram(double batch_min, double batch_max);
  void add_to_histogram(const torch::Tensor& values);
  double value_at_rank(double rank) const;
  double nonzero_value_at_rank(double rank) const;
  Range percentile_range() const;
  Range entropy_range() const;
  double clip_divergence(Range clip, const std::vector<double>& below) const;

  Calibration method_;
  double percentile_;
  int64_t bins_;
  int64_t count_ = 0, zeros_ = 0, negatives_ = 0;
  double min_ = 0, max_ = 0;  ///< exact, whatever the histogram's resolution
  double lo_ = 0,
         hi_ = 0;               ///< the histogram's span; bin i is [lo_ + i w, lo_ + (i + 1) w)
  std::vector<double> counts_;  ///< of the values other than 0
};

}  // namespace retort::quant
