// Calibrating an activation's int8 range: min/max, percentiles and entropy over
// batches, and the quint8 parameters of a range.
#include "quant/calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "tests/common/expect.h"

using namespace retort;
using namespace retort::quant;
using test::expect_error;

namespace {

constexpr double kZ99 = 2.3263478740408408;  // the standard normal's 99th percentile

/// A seeded standard normal sample of n values.
torch::Tensor normal(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({n});
}

/// The range `method` chooses from the batches, observed one after the other.
Range calibrate(Calibration method, const std::vector<torch::Tensor>& batches, double percentile = 99.99) {
  RangeObserver observer(method, percentile);
  for (const auto& b : batches) observer.observe(b);
  return observer.range();
}

/// q = round(x / scale) + zero_point, clamped to [0, 255], as
/// quantize_per_tensor does.
int64_t quantize(double x, const AffineParams& p) {
  return std::clamp<int64_t>(std::llround(x / p.scale) + p.zero_point, 0, 255);
}

double dequantize(int64_t q, const AffineParams& p) { return p.scale * static_cast<double>(q - p.zero_point); }

}  // namespace

TEST(MinMax, IsTheExactMinAndMaxOverBatchesOfDifferentRanges) {
  torch::manual_seed(1);
  const std::vector<torch::Tensor> batches = {torch::randn({4, 8, 16}) * 0.1, torch::randn({1000}) * 10 + 5,
                                              torch::rand({3, 7}) - 3, torch::randn({50}).to(torch::kFloat64)};
  RangeObserver observer(Calibration::kMinMax);
  int64_t n = 0;
  for (const auto& b : batches) {
    observer.observe(b);
    n += b.numel();
  }
  std::vector<torch::Tensor> flat;
  for (const auto& b : batches) flat.push_back(b.to(torch::kFloat32).flatten());
  const auto all = torch::cat(flat);
  const auto r = observer.range();
  EXPECT_EQ(r.lo, all.min().item<double>());
  EXPECT_EQ(r.hi, all.max().item<double>());
  EXPECT_EQ(observer.count(), n);
}

TEST(MinMax, StaysExactWhenLaterBatchesAreNarrowerOrConstant) {
  RangeObserver observer(Calibration::kMinMax);
  observer.observe(torch::full({10}, 0.25f));  // a constant first batch
  observer.observe(torch::tensor({-7.5f, 3.0f}));
  observer.observe(torch::tensor({0.5f}));
  EXPECT_EQ(observer.range().lo, -7.5);
  EXPECT_EQ(observer.range().hi, 3.0);
  RangeObserver constant(Calibration::kEntropy);
  constant.observe(torch::full({5}, 1.5f));
  EXPECT_EQ(constant.range().lo, 1.5);
  EXPECT_EQ(constant.range().hi, 1.5);
}

TEST(Percentile, NinetyNineOfAStandardNormalIsAbout2326) {
  const auto x = normal(1 << 20, 2);
  RangeObserver observer(Calibration::kPercentile, 99);
  observer.observe(x);
  const auto r = observer.range();
  // One bin width for the histogram, about 0.004 for the sample's spread.
  const double tol = observer.bin_width() + 0.01;
  EXPECT_NEAR(r.lo, -kZ99, tol);
  EXPECT_NEAR(r.hi, kZ99, tol);
  EXPECT_LT(observer.bin_width(), 0.01);
}

TEST(Percentile, HundredEqualsMinMax) {
  const auto x = normal(100000, 3) * 3 + 1;
  const auto p = calibrate(Calibration::kPercentile, {x}, 100);
  const auto m = calibrate(Calibration::kMinMax, {x});
  EXPECT_EQ(p.lo, m.lo);
  EXPECT_EQ(p.hi, m.hi);
  // And 99.99 of 100k values clips about 10 on each side, inside min/max.
  const auto q = calibrate(Calibration::kPercentile, {x}, 99.99);
  EXPECT_GT(q.lo, m.lo);
  EXPECT_LT(q.hi, m.hi);
}

TEST(Percentile, BatchesWithGrowingRangeAgreeWithOneBatch) {
  const auto x = normal(1 << 20, 4);
  // Sorted by magnitude: every batch reaches further out than the ones before
  // it.
  const auto by_size = x.index_select(0, std::get<1>(x.abs().sort()));
  const auto chunks = by_size.chunk(8);
  RangeObserver split(Calibration::kPercentile, 99);
  for (const auto& c : chunks) split.observe(c);
  RangeObserver whole(Calibration::kPercentile, 99);
  whole.observe(x);
  EXPECT_GT(split.bin_width(), whole.bin_width());  // the histogram did grow
  EXPECT_LT(split.bin_width(), 4 * whole.bin_width());
  const double tol = split.bin_width() + whole.bin_width();
  EXPECT_NEAR(split.range().lo, whole.range().lo, tol);
  EXPECT_NEAR(split.range().hi, whole.range().hi, tol);
  EXPECT_NEAR(split.range().hi, kZ99, tol + 0.01);
  EXPECT_EQ(split.count(), whole.count());
}

TEST(Percentile, ExactZerosAreAPointMassAtZero) {
  // 25 % in [-2, -1], 50 % zeros, 25 % in [1, 2].
  torch::manual_seed(5);
  const int64_t n = 1 << 18;
  const auto x = torch::cat({torch::rand({n}) - 2, torch::zeros({2 * n}), torch::rand({n}) + 1});
  RangeObserver observer(Calibration::kPercentile, 90);
  observer.observe(x);
  const double tol = observer.bin_width() + 0.01;
  EXPECT_NEAR(observer.range().lo, -1.6,
              tol);  // the 10th percentile: 40 % into the negatives
  EXPECT_NEAR(observer.range().hi, 1.6, tol);
  EXPECT_EQ(calibrate(Calibration::kPercentile, {x}, 70).lo,
            0.0);  // 30th and 70th: both zeros
  EXPECT_EQ(calibrate(Calibration::kPercentile, {x}, 70).hi, 0.0);
}

TEST(Entropy, ClipsAFewHugeOutliersButCoversTheBulk) {
  const double outlier = 50;
  auto x = torch::cat({normal(1 << 20, 6), torch::tensor({1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f}) * outlier});
  const auto r = calibrate(Calibration::kEntropy, {x});
  EXPECT_LT(r.hi, outlier / 4);
  EXPECT_GT(r.lo, -outlier / 4);
  EXPECT_GT(r.hi, 2.5);
  EXPECT_LT(r.lo, -2.5);
  EXPECT_EQ(calibrate(Calibration::kMinMax, {x}).hi,
            outlier);  // what entropy saved us from
}

TEST(Entropy, KeepsTheFullRangeOfAUniformDistribution) {
  torch::manual_seed(7);
  const auto x = torch::rand({1 << 20}) * 6 - 2;  // [-2, 4]
  RangeObserver observer(Calibration::kEntropy);
  observer.observe(x);
  const auto r = observer.range();
  const auto m = calibrate(Calibration::kMinMax, {x});
  EXPECT_NEAR(r.lo, m.lo, 4 * observer.bin_width());
  EXPECT_NEAR(r.hi, m.hi, 4 * observer.bin_width());
}

TEST(Entropy, NonNegativeTensorGetsLoZeroAndKeepsTheTail) {
  // ReLU of a standard normal: half exact zeros, which must not pull the clip
  // in.
  const auto x = torch::relu(normal(1 << 20, 8));
  const auto r = calibrate(Calibration::kEntropy, {x});
  EXPECT_EQ(r.lo, 0.0);
  EXPECT_GT(r.hi, 3.0);
  EXPECT_LE(r.hi, x.max().item<double>());
}

TEST(Entropy, BatchesWithGrowingRangeAgreeWithOneBatch) {
  const auto x = normal(1 << 20, 9);
  const auto by_size = x.index_select(0, std::get<1>(x.abs().sort()));
  const auto split = calibrate(Calibration::kEntropy, by_size.chunk(4));
  const auto whole = calibrate(Calibration::kEntropy, {x});
  EXPECT_NEAR(split.hi, whole.hi, 0.5);
  EXPECT_NEAR(split.lo, whole.lo, 0.5);
  EXPECT_GT(split.hi, 3.0);
}

TEST(AffineUint8, ZeroIsExactAndTheEndsMapTo0And255) {
  const Range r{-1.3, 2.7};
  const auto p = affine_uint8(r);
  ASSERT_GE(p.zero_point, 0);
  ASSERT_LE(p.zero_point, 255);
  EXPECT_NEAR(p.scale, 4.0 / 255, 1e-12);
  EXPECT_EQ(quantize(0.0, p), p.zero_point);
  EXPECT_EQ(dequantize(quantize(0.0, p), p), 0.0);
  EXPECT_LE(std::abs(quantize(r.lo, p) - 0), 1);
  EXPECT_LE(std::abs(quantize(r.hi, p) - 255), 1);
  EXPECT_NEAR(dequantize(0, p), r.lo, p.scale);
  EXPECT_NEAR(dequantize(255, p), r.hi, p.scale);
}

TEST(AffineUint8, ARangeWithoutZeroIsWidenedToIt) {
  const auto pos = affine_uint8({2.0, 5.1});
  EXPECT_EQ(pos.zero_point, 0);
  EXPECT_NEAR(dequantize(255, pos), 5.1, 1e-12);
  const auto neg = affine_uint8({-3.0, -1.0});
  EXPECT_EQ(neg.zero_point, 255);
  EXPECT_NEAR(dequantize(0, neg), -3.0, 1e-12);
  const auto relu = affine_uint8({0.0, 6.0});
  EXPECT_EQ(relu.zero_point, 0);
  EXPECT_DOUBLE_EQ(relu.scale, 6.0 / 255);
}

TEST(AffineUint8, ADegenerateRangeIsValid) {
  for (const Range r : {Range{0, 0}, Range{1e-12, 1e-12}}) {
    const auto p = affine_uint8(r);
    EXPECT_GT(p.scale, 0);
    EXPECT_TRUE(std::isfinite(1 / p.scale));
    EXPECT_GE(p.zero_point, 0);
    EXPECT_LE(p.zero_point, 255);
    EXPECT_EQ(dequantize(p.zero_point, p), 0.0);
  }
  expect_error<Error>([] { affine_uint8({2.0, 1.0}); }, {"affine_uint8", "invalid range"});
  expect_error<Error>([] { affine_uint8({0.0, std::nan("")}); }, {"invalid range"});
}

TEST(RangeObserverErrors, NonFiniteValuesAreNamedAndLeaveTheObserverAsItWas) {
  RangeObserver observer(Calibration::kMinMax);
  observer.observe(torch::tensor({1.0f, 2.0f}));
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  expect_error<Error>([&] { observer.observe(torch::tensor({0.5f, nan, nan, 100.0f})); }, {"2 NaN", "0 inf"});
  expect_error<Error>([&] { observer.observe(torch::tensor({-inf, 100.0f})); }, {"0 NaN", "1 inf"});
  expect_error<Error>([&] { observer.observe(torch::tensor({1e300}, torch::kFloat64)); }, {"1 inf", "float32"});
  EXPECT_EQ(observer.count(), 2);
  EXPECT_EQ(observer.range().hi, 2.0);
}

TEST(RangeObserverErrors, NothingObservedNonFloatingAndEmptyBatches) {
  RangeObserver observer(Calibration::kEntropy);
  expect_error<Error>([&] { observer.range(); }, {"no values observed"});
  observer.observe(torch::empty({0, 3}));
  EXPECT_EQ(observer.count(), 0);
  expect_error<Error>([&] { observer.range(); }, {"no values observed"});
  expect_error<Error>([&] { observer.observe(torch::arange(5)); }, {"floating point", "Long"});
}

TEST(RangeObserverErrors, PercentileOutsideZeroToHundredIsAConfigError) {
  for (const double p : {0.0, -1.0, 100.5, std::nan("")})
    expect_error<ConfigError>([&] { RangeObserver(Calibration::kPercentile, p); }, {"quant.percentile", "(0, 100]"});
  expect_error<Error>([] { RangeObserver(Calibration::kEntropy, 99.99, 16); }, {"bins must be in [256, 8192]"});
  EXPECT_NO_THROW(RangeObserver(Calibration::kPercentile, 100));
}
