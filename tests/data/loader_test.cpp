#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <set>

#include "core/error.h"
#include "data/data.h"
#include "tests/data/helpers.h"

namespace retort::data {
namespace {

using ::testing::HasSubstr;
using namespace retort::data::testing;

Dataset synthetic(int64_t n, int64_t c = 1, int64_t h = 6, int64_t w = 5, int64_t seed = 0) {
  Dataset d;
  d.images = random_u8({n, c, h, w}, seed);
  auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(seed) + 1000);
  d.labels = torch::randint(0, 10, {n}, gen, torch::kInt64);
  return d;
}

LoaderOptions opts(int64_t prefetch, bool augment = false, uint64_t seed = 0) {
  LoaderOptions o;
  o.prefetch = prefetch;
  o.augment = augment;
  o.seed = seed;
  return o;
}

std::vector<Batch> drain(Loader& loader) {
  std::vector<Batch> out;
  while (auto b = loader.next()) out.push_back(*b);
  return out;
}

/// One sample augmented the slow, obvious way: pad, slice the window, mirror.
torch::Tensor reference_augment(const torch::Tensor& img, CropFlip p, int64_t pad) {  // [C, H, W]
  const int64_t h = img.size(1), w = img.size(2);
  auto padded = torch::constant_pad_nd(img, {pad, pad, pad, pad}, 0);
  auto crop = padded.narrow(1, p.dy, h).narrow(2, p.dx, w);
  return p.flip ? crop.flip({2}) : crop;
}

TEST(Normalize, MatchesTheFormula) {
  auto x = random_u8({4, 1, 3, 3}, 1);
  auto got = normalize(x, 0.25, 0.5);
  EXPECT_EQ(got.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(got, ((x.to(torch::kFloat64) / 255.0 - 0.25) / 0.5).to(torch::kFloat32), 1e-6, 1e-6));
}

TEST(AugmentParams, PureRangedAndBalanced) {
  std::set<int64_t> dys, dxs;
  int flips = 0;
  for (int64_t i = 0; i < 2000; ++i) {
    const CropFlip p = augment_params(9, 4, i, 2, true);
    const CropFlip q = augment_params(9, 4, i, 2, true);
    EXPECT_EQ(p.dy, q.dy);
    EXPECT_EQ(p.dx, q.dx);
    EXPECT_EQ(p.flip, q.flip);
    ASSERT_GE(p.dy, 0);
    ASSERT_LE(p.dy, 4);
    ASSERT_GE(p.dx, 0);
    ASSERT_LE(p.dx, 4);
    dys.insert(p.dy);
    dxs.insert(p.dx);
    flips += p.flip;
    EXPECT_FALSE(augment_params(9, 4, i, 2, /*hflip=*/false).flip);
    const CropFlip zero = augment_params(9, 4, i, 0, true);
    EXPECT_EQ(zero.dy, 0);
    EXPECT_EQ(zero.dx, 0);
  }
  EXPECT_EQ(dys.size(), 5u);
  EXPECT_EQ(dxs.size(), 5u);
  EXPECT_NEAR(flips, 1000, 120);
  // Another epoch or seed draws differently.
  int same_epoch = 0, same_seed = 0;
  for (int64_t i = 0; i < 200; ++i) {
    auto a = augment_params(9, 4, i, 2, true), b = augment_params(9, 5, i, 2, true), c = augment_params(10, 4, i, 2, true);
    same_epoch += a.dy == b.dy && a.dx == b.dx && a.flip == b.flip;
    same_seed += a.dy == c.dy && a.dx == c.dx && a.flip == c.flip;
  }
  EXPECT_LT(same_epoch, 40);  // 1/50 expected by chance
  EXPECT_LT(same_seed, 40);
}

TEST(Augment, EqualsThePerSampleReference) {
  for (int64_t c : {1, 3}) {
    auto x = random_u8({64, c, 7, 5}, 2 + c);
    std::vector<int64_t> indices(64);
    for (int64_t i = 0; i < 64; ++i) indices[i] = 1000 + 7 * i;
    for (int64_t pad : {0, 1, 3}) {
      auto got = augment(x, indices, 5, 2, pad, true);
      ASSERT_EQ(got.sizes(), x.sizes());
      for (int64_t i = 0; i < 64; ++i) {
        auto want = reference_augment(x[i], augment_params(5, 2, indices[i], pad, true), pad);
        ASSERT_TRUE(torch::equal(got[i], want)) << "c " << c << " pad " << pad << " sample " << i;
      }
    }
  }
  auto x = random_u8({3, 1, 4, 4}, 9);
  EXPECT_TRUE(torch::equal(augment(x, {0, 1, 2}, 5, 2, 0, false), x));
}

TEST(MakeBatch, EmptyShard) {
  Dataset d = synthetic(10);
  DistributedSampler::Shard shard{{}, 1, 10};
  Batch b = make_batch(d, shard, 0, opts(0, true));
  EXPECT_EQ(b.x.sizes(), (std::vector<int64_t>{0, 1, 6, 5}));
  EXPECT_EQ(b.y.sizes(), (std::vector<int64_t>{0}));
}

TEST(Loader, BatchesEqualADirectComputation) {
  Dataset d = synthetic(50);
  for (int64_t prefetch : {0, 1, 3}) {
    DistributedSampler sampler(50, 8, 0, 1, 4);
    sampler.set_epoch(1);
    DistributedSampler expected = sampler;
    Loader loader(d, sampler, opts(prefetch));
    int64_t k = 0;
    while (auto batch = loader.next()) {
      auto shard = expected.next();
      ASSERT_TRUE(shard);
      auto idx = torch::tensor(shard->indices, torch::kInt64);
      auto want = (d.images.index_select(0, idx).to(torch::kFloat64) / 255.0 - 0.2860) / 0.3530;
      EXPECT_EQ(batch->x.scalar_type(), torch::kFloat32);
      EXPECT_EQ(batch->x.sizes(), want.sizes());
      EXPECT_TRUE(torch::allclose(batch->x.to(torch::kFloat64), want, 1e-5, 1e-5));
      EXPECT_TRUE(torch::equal(batch->y, d.labels.index_select(0, idx)));
      EXPECT_EQ(batch->step_in_epoch, k);
      EXPECT_EQ(batch->global_batch_size, shard->global_batch_size);
      // The caller's sampler counts batches handed out, not batches prepared ahead.
      EXPECT_EQ(sampler.cursor(), k + 1);
      ++k;
    }
    EXPECT_EQ(k, 7) << "prefetch " << prefetch;
    EXPECT_FALSE(expected.next());
    EXPECT_FALSE(loader.next());  // stays at the end
    EXPECT_TRUE(sampler.exhausted());
  }
}

TEST(Loader, AugmentedBatchesEqualTheReference) {
  Dataset d = synthetic(40, 1, 8, 8, 3);
  DistributedSampler sampler(40, 16, 0, 1, 2);
  sampler.set_epoch(6);
  DistributedSampler expected = sampler;
  LoaderOptions o = opts(2, true, 77);
  o.crop_pad = 2;
  Loader loader(d, sampler, o);
  while (auto batch = loader.next()) {
    auto shard = *expected.next();
    for (size_t i = 0; i < shard.indices.size(); ++i) {
      const int64_t s = shard.indices[i];
      auto img = reference_augment(d.images[s], augment_params(77, 6, s, 2, true), 2);
      auto want = (img.to(torch::kFloat64) / 255.0 - o.mean) / o.stddev;
      ASSERT_TRUE(torch::allclose(batch->x[i].to(torch::kFloat64), want, 1e-5, 1e-5)) << "sample " << s;
    }
  }
}

TEST(Loader, AugmentationIsTheSameOnAnyWorldSize) {
  Dataset d = synthetic(37, 1, 6, 6, 4);
  auto run = [&](int rank, int world) {
    DistributedSampler s(37, 12, rank, world, 5);
    s.set_epoch(2);
    Loader loader(d, s, opts(2, true, 8));
    return drain(loader);
  };
  auto single = run(0, 1);
  auto r0 = run(0, 2), r1 = run(1, 2);
  ASSERT_EQ(single.size(), r0.size());
  for (size_t k = 0; k < single.size(); ++k) {
    EXPECT_TRUE(torch::equal(torch::cat({r0[k].x, r1[k].x}), single[k].x)) << k;
    EXPECT_TRUE(torch::equal(torch::cat({r0[k].y, r1[k].y}), single[k].y)) << k;
  }
  // And the same run twice is identical; another epoch is not.
  auto again = run(0, 1);
  for (size_t k = 0; k < single.size(); ++k) EXPECT_TRUE(torch::equal(again[k].x, single[k].x));
  DistributedSampler s(37, 12, 0, 1, 5);
  s.set_epoch(3);
  Loader other(d, s, opts(2, true, 8));
  EXPECT_FALSE(torch::equal(other.next()->x, single[0].x));
}

TEST(Loader, ResumeFromSamplerStateReproducesTheBatches) {
  Dataset d = synthetic(90, 1, 6, 6, 6);
  DistributedSampler full(90, 8, 0, 1, 12);
  full.set_epoch(4);
  Loader full_loader(d, full, opts(2, true, 3));
  auto reference = drain(full_loader);
  ASSERT_EQ(reference.size(), 12u);

  std::map<std::string, torch::Tensor> checkpoint;
  {
    DistributedSampler s(90, 8, 0, 1, 12);
    s.set_epoch(4);
    Loader loader(d, s, opts(3, true, 3));
    for (int i = 0; i < 5; ++i) loader.next();
    checkpoint = s.state_dict();  // while the worker has read further ahead
  }
  EXPECT_EQ(checkpoint.at("cursor").item<int64_t>(), 5);
  DistributedSampler resumed(90, 8, 0, 1, 12);
  resumed.load_state_dict(checkpoint);
  Loader loader(d, resumed, opts(1, true, 3));
  auto rest = drain(loader);
  ASSERT_EQ(rest.size(), 7u);
  for (size_t k = 0; k < rest.size(); ++k) {
    EXPECT_EQ(rest[k].step_in_epoch, reference[5 + k].step_in_epoch);
    EXPECT_TRUE(torch::equal(rest[k].x, reference[5 + k].x)) << k;
    EXPECT_TRUE(torch::equal(rest[k].y, reference[5 + k].y)) << k;
  }
}

TEST(Loader, WorkerExceptionIsRethrownFromNext) {
  Dataset d = synthetic(30);
  d.labels = torch::zeros({30}, torch::kInt64);
  d.labels[17] = 42;  // a bad label, found while assembling the batch that holds sample 17
  for (int64_t prefetch : {0, 2}) {
    DistributedSampler sampler(30, 4, 0, 1, 0, /*shuffle=*/false);
    Loader loader(d, sampler, opts(prefetch));
    int ok = 0;
    std::string msg;
    try {
      while (loader.next()) ++ok;
    } catch (const DataError& e) {
      msg = e.what();
    }
    EXPECT_EQ(ok, 4) << "prefetch " << prefetch;  // batches 0..3 hold samples 0..15
    EXPECT_THAT(msg, HasSubstr("label 42 of sample 17 is outside [0, 10)"));
    EXPECT_EQ(sampler.cursor(), 4);  // the failed batch was not handed out
    EXPECT_THAT(error_of<DataError>([&] { loader.next(); }), HasSubstr("label 42"));  // sticky
  }
}

TEST(Loader, SamplerIndexOutOfRangeIsAnError) {
  Dataset d = synthetic(10);
  DistributedSampler::Shard shard{{3, 10}, 2, 0};
  EXPECT_THAT(error_of<DataError>([&] { make_batch(d, shard, 0, opts(0)); }),
              HasSubstr("sample index 10 is outside the dataset of 10 samples"));
  DistributedSampler bigger(12, 4);
  EXPECT_THAT(error_of<DataError>([&] { Loader(d, bigger, opts(2)); }),
              HasSubstr("the sampler covers 12 samples but the dataset has 10"));
}

TEST(Loader, ConstructorRejectsBadInputs) {
  Dataset d = synthetic(10);
  DistributedSampler s(10, 4);
  Dataset floats = d;
  floats.images = d.images.to(torch::kFloat32);
  EXPECT_THAT(error_of<DataError>([&] { Loader(floats, s, opts(1)); }), HasSubstr("uint8"));
  Dataset short_labels = d;
  short_labels.labels = d.labels.narrow(0, 0, 9);
  EXPECT_THAT(error_of<DataError>([&] { Loader(short_labels, s, opts(1)); }), HasSubstr("labels must be an int64 [N]"));
  EXPECT_THAT(error_of<ConfigError>([&] { Loader(d, s, opts(-1)); }), HasSubstr("prefetch must be >= 0, got -1"));
  LoaderOptions o = opts(1);
  o.stddev = 0;
  EXPECT_THAT(error_of<ConfigError>([&] { Loader(d, s, o); }), HasSubstr("stddev must be > 0"));
  o = opts(1);
  o.crop_pad = -1;
  EXPECT_THAT(error_of<ConfigError>([&] { Loader(d, s, o); }), HasSubstr("crop_pad"));
  if (!torch::cuda::is_available()) {
    o = opts(1);
    o.device = torch::Device(torch::kCUDA, 0);
    EXPECT_THAT(error_of<ConfigError>([&] { Loader(d, s, o); }), HasSubstr("CUDA is not available"));
  }
}

TEST(Loader, SamplerTouchedDuringIterationIsAnError) {
  Dataset d = synthetic(40);
  DistributedSampler s(40, 4);
  Loader loader(d, s, opts(2));
  ASSERT_TRUE(loader.next());
  s.next();  // the caller steps the sampler behind the loader's back
  EXPECT_THAT(error_of<Error>([&] { loader.next(); }), HasSubstr("sampler was advanced or reset"));
}

TEST(Loader, DestructionMidEpochDoesNotHang) {
  // One intra-op thread, here and in the workers (they pick the count up when they start):
  // with a team per worker, many test processes sharing the cores spin-wait in OpenMP for
  // seconds (six copies of this test on 2 cores: 0.2-0.3 s each with 1 thread, 11-12 s with
  // 2), which a timing bound cannot tell from a hang.
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  struct Restore {
    int n;
    ~Restore() { at::set_num_threads(n); }
  } restore{threads};
  Dataset d = synthetic(4000, 1, 28, 28, 7);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) {
    DistributedSampler s(4000, 64, 0, 1, i);
    Loader loader(d, s, opts(1 + i % 3, i % 2 == 0));
    for (int k = 0; k < i % 4; ++k) ASSERT_TRUE(loader.next());  // 0..3 batches, then destroyed
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 20.0);
}

TEST(Loader, MoveKeepsTheWorker) {
  Dataset d = synthetic(20);
  DistributedSampler s(20, 5);
  Loader a(d, s, opts(2));
  ASSERT_TRUE(a.next());
  Loader b = std::move(a);
  EXPECT_EQ(drain(b).size(), 3u);
  DistributedSampler s2(20, 5);
  Loader c(d, s2, opts(2));
  c = std::move(b);  // c's own worker is joined
  EXPECT_FALSE(c.next());
}

TEST(EvalLoader, WholeSplitInOrderWithoutAugmentation) {
  Dataset d = synthetic(23, 1, 6, 5, 8);
  LoaderOptions o = opts(2, /*augment=*/true, 5);  // ignored for eval
  EvalLoader eval(d, 10, o);
  EXPECT_EQ(eval.batches(), 3);
  std::vector<torch::Tensor> xs, ys;
  while (auto b = eval.next()) {
    xs.push_back(b->x);
    ys.push_back(b->y);
  }
  ASSERT_EQ(xs.size(), 3u);
  EXPECT_TRUE(torch::allclose(torch::cat(xs), normalize(d.images, o.mean, o.stddev)));
  EXPECT_TRUE(torch::equal(torch::cat(ys), d.labels));
  // Three ranks together see the whole split once.
  std::vector<torch::Tensor> all;
  std::vector<std::vector<torch::Tensor>> per_rank(3);
  for (int r = 0; r < 3; ++r) {
    EvalLoader e(d, 10, o, r, 3);
    while (auto b = e.next()) per_rank[r].push_back(b->y);
  }
  for (size_t k = 0; k < 3; ++k) {
    for (int r = 0; r < 3; ++r) all.push_back(per_rank[r][k]);
  }
  EXPECT_TRUE(torch::equal(torch::cat(all), d.labels));
}

TEST(MakeLoaderOptions, FromDataOptions) {
  DataOptions d;
  d.name = "mnist";
  d.augment = true;
  d.prefetch = 4;
  LoaderOptions o = make_loader_options(d, torch::kCPU, 99);
  EXPECT_DOUBLE_EQ(o.mean, 0.1307);
  EXPECT_DOUBLE_EQ(o.stddev, 0.3081);
  EXPECT_TRUE(o.augment);
  EXPECT_EQ(o.prefetch, 4);
  EXPECT_EQ(o.seed, 99u);
  d.name = "fashion-mnist";
  EXPECT_DOUBLE_EQ(make_loader_options(d, torch::kCPU, 0).mean, 0.2860);
}

TEST(LoaderCuda, PinnedNonBlockingCopyMatchesTheCpuBatches) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  Dataset d = synthetic(1000, 1, 28, 28, 11);
  LoaderOptions on_gpu = opts(2, true, 4);
  on_gpu.device = torch::Device(torch::kCUDA, 0);
  {
    Batch b = make_batch(d, DistributedSampler::Shard{{1, 5, 9}, 3, 0}, 0, on_gpu);
    EXPECT_TRUE(b.x.is_pinned());
    EXPECT_TRUE(b.y.is_pinned());
  }
  DistributedSampler cpu_sampler(1000, 64, 0, 1, 2), gpu_sampler(1000, 64, 0, 1, 2);
  Loader cpu_loader(d, cpu_sampler, opts(2, true, 4));
  Loader gpu_loader(d, gpu_sampler, on_gpu);
  int64_t k = 0;
  while (auto g = gpu_loader.next()) {
    auto c = cpu_loader.next();
    ASSERT_TRUE(c);
    ASSERT_TRUE(g->x.is_cuda());
    ASSERT_TRUE(g->y.is_cuda());
    // Work queued on the stream after the asynchronous copies sees their data.
    auto sums = g->x.sum({1, 2, 3}).cpu();
    EXPECT_TRUE(torch::allclose(sums, c->x.sum({1, 2, 3}), 1e-4, 1e-3)) << k;
    EXPECT_TRUE(torch::equal(g->x.cpu(), c->x)) << k;
    EXPECT_TRUE(torch::equal(g->y.cpu(), c->y)) << k;
    ++k;
  }
  EXPECT_EQ(k, 16);
  EvalLoader eval(d, 300, on_gpu);
  int64_t seen = 0;
  while (auto b = eval.next()) seen += b->y.size(0);
  EXPECT_EQ(seen, 1000);
}

TEST(FashionMnist, AugmentedEpochOverRealData) {
  const fs::path root = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(root / "train-images-idx3-ubyte.gz")) GTEST_SKIP() << root << " absent";
  DataOptions dopts;
  dopts.subset = 6400;
  dopts.augment = true;
  Dataset train = load_dataset(dopts, "train");
  DistributedSampler s(train.size(), dopts.batch_size, 0, 1, 1);
  Loader loader(train, s, make_loader_options(dopts, torch::kCPU, 1));
  int64_t batches = 0;
  double sum = 0;
  const auto start = std::chrono::steady_clock::now();
  while (auto b = loader.next()) {
    ASSERT_EQ(b->x.sizes(), (std::vector<int64_t>{128, 1, 28, 28}));
    sum += b->x.mean().item<double>();
    ++batches;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(batches, 50);
  // Normalized data has mean near 0 (padding zeros pull it a little negative).
  EXPECT_NEAR(sum / batches, 0.0, 0.15);
  std::cout << "[ info ] " << batches << " augmented batches of 128 in " << seconds << " s\n";
}

// --- mixup ------------------------------------------------------------------------------

TEST(Mixup, ParamsArePureAndKeyedBySeedEpochAndFirstIndex) {
  const MixParams a = mixup_params(7, 3, 41, 16, 1.0), b = mixup_params(7, 3, 41, 16, 1.0);
  EXPECT_EQ(a.lam, b.lam);
  EXPECT_EQ(a.perm, b.perm);
  ASSERT_EQ(a.perm.size(), 16u);
  EXPECT_EQ(std::set<int64_t>(a.perm.begin(), a.perm.end()), (std::set<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                                             11, 12, 13, 14, 15}));
  EXPECT_GT(a.lam, 0.0);
  EXPECT_LT(a.lam, 1.0);
  // Any key changed: another draw.
  for (const MixParams& o : {mixup_params(8, 3, 41, 16, 1.0), mixup_params(7, 4, 41, 16, 1.0),
                             mixup_params(7, 3, 42, 16, 1.0)}) {
    EXPECT_NE(o.lam, a.lam);
    EXPECT_NE(o.perm, a.perm);
  }
  EXPECT_TRUE(mixup_params(7, 3, 41, 0, 1.0).perm.empty());
  EXPECT_EQ(mixup_params(7, 3, 41, 1, 1.0).perm, std::vector<int64_t>{0});
  EXPECT_THROW(mixup_params(7, 3, 41, 4, 0.0), ConfigError);
  EXPECT_THROW(mixup_params(7, 3, 41, 4, -1.0), ConfigError);
  EXPECT_THROW(mixup_params(7, 3, 41, 4, std::nan("")), ConfigError);
}

TEST(Mixup, BetaSamplesHaveTheMomentsOfBetaAlphaAlpha) {
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); Beta(1, 1) is uniform. 40k draws: the
  // standard error of the mean is < 0.0025 and of the variance < 2 %.
  for (double alpha : {0.1, 0.2, 1.0, 4.0}) {
    SplitMix64 rng(1234 + static_cast<uint64_t>(alpha * 10));
    const int n = 40000;
    double sum = 0, sq = 0;
    int below_tenth = 0;
    for (int i = 0; i < n; ++i) {
      const double v = sample_symmetric_beta(rng, alpha);
      ASSERT_TRUE(v >= 0.0 && v <= 1.0) << v;
      sum += v;
      sq += v * v;
      below_tenth += v < 0.1;
    }
    const double mean = sum / n, var = sq / n - mean * mean, want_var = 1.0 / (4.0 * (2.0 * alpha + 1.0));
    EXPECT_NEAR(mean, 0.5, 0.01) << "alpha " << alpha;
    EXPECT_NEAR(var / want_var, 1.0, 0.06) << "alpha " << alpha << ": variance " << var << " vs " << want_var;
    if (alpha == 1.0) {
      EXPECT_NEAR(below_tenth / static_cast<double>(n), 0.1, 0.01);
    }
    // Small alpha puts most of the mass near 0 and 1 (Beta(0.2, 0.2): P(v < 0.1) = 0.337).
    if (alpha == 0.2) {
      EXPECT_NEAR(below_tenth / static_cast<double>(n), 0.337, 0.015);
    }
  }
}

TEST(Mixup, BatchIsTheConvexCombinationOfThePlainBatch) {
  Dataset d = synthetic(40, 1, 8, 8, 3);
  DistributedSampler sampler(40, 16, 0, 1, 2);
  sampler.set_epoch(6);
  DistributedSampler plain_sampler = sampler;
  LoaderOptions o = opts(2, /*augment=*/true, 77);
  Loader plain(d, plain_sampler, o);
  o.mixup = 0.4;
  Loader mixed(d, sampler, o);
  DistributedSampler expected = sampler;
  int batches = 0;
  std::set<double> lams;
  while (auto m = mixed.next()) {
    auto p = plain.next();
    ASSERT_TRUE(p);
    const auto shard = *expected.next();
    const MixParams want = mixup_params(77, 6, shard.indices.front(), static_cast<int64_t>(shard.indices.size()), 0.4);
    EXPECT_EQ(m->lam, want.lam);
    lams.insert(m->lam);
    EXPECT_TRUE(torch::equal(m->y, p->y));  // the first label set is the plain one
    ASSERT_TRUE(m->y_mix.defined());
    for (size_t i = 0; i < want.perm.size(); ++i) {
      const auto j = want.perm[i];
      EXPECT_EQ(m->y_mix[i].item<int64_t>(), p->y[j].item<int64_t>());
      auto x = want.lam * p->x[i].to(torch::kFloat64) + (1.0 - want.lam) * p->x[j].to(torch::kFloat64);
      ASSERT_TRUE(torch::allclose(m->x[i].to(torch::kFloat64), x, 1e-5, 1e-5)) << "sample " << i;
    }
    const Labels l = m->labels();
    EXPECT_TRUE(l.mixed());
    EXPECT_EQ(l.lam, m->lam);
    ++batches;
  }
  EXPECT_EQ(batches, 3);
  EXPECT_EQ(lams.size(), 3u);  // a new draw every batch
  // Without mixup a batch carries plain labels only.
  DistributedSampler s2(40, 16, 0, 1, 2);
  Loader off(d, s2, opts(0));
  auto b = off.next();
  EXPECT_FALSE(b->y_mix.defined());
  EXPECT_EQ(b->lam, 1.0);
  EXPECT_FALSE(b->labels().mixed());
}

TEST(Mixup, EvaluationNeverMixesAndBadAlphaIsRefused) {
  Dataset d = synthetic(23, 1, 6, 5, 8);
  LoaderOptions o = opts(2, /*augment=*/true, 5);
  o.mixup = 1.0;  // ignored for eval, like augment
  EvalLoader eval(d, 10, o);
  std::vector<torch::Tensor> xs;
  while (auto b = eval.next()) {
    EXPECT_FALSE(b->y_mix.defined());
    xs.push_back(b->x);
  }
  EXPECT_TRUE(torch::allclose(torch::cat(xs), normalize(d.images, o.mean, o.stddev)));
  for (double bad : {-0.1, std::nan(""), std::numeric_limits<double>::infinity()}) {
    DistributedSampler s(23, 10);
    o.mixup = bad;
    EXPECT_THAT(error_of<ConfigError>([&] { Loader l(d, s, o); }), HasSubstr("loader: mixup must be a finite number"));
  }
}

TEST(Labels, MixedCrossEntropyEqualsTheCrossEntropyOfMixedOneHotTargets) {
  auto logits = torch::randn({6, 5}, torch::kFloat64);
  auto y = torch::tensor({0, 1, 2, 3, 4, 0}, torch::kInt64);
  auto y_mix = torch::tensor({4, 1, 0, 2, 3, 3}, torch::kInt64);
  const double lam = 0.3;
  auto ce = [&](const torch::Tensor& t) { return torch::nn::functional::cross_entropy(logits, t); };
  // By hand: q = lam onehot(y) + (1 - lam) onehot(y_mix); CE = mean_i -sum_c q_ic log softmax_ic.
  auto q = lam * torch::one_hot(y, 5).to(torch::kFloat64) + (1 - lam) * torch::one_hot(y_mix, 5).to(torch::kFloat64);
  auto want = -(q * torch::log_softmax(logits, 1)).sum(1).mean();
  EXPECT_NEAR(Labels(y, y_mix, lam).mix(ce).item<double>(), want.item<double>(), 1e-12);
  // Plain labels: the loss itself, once.
  int calls = 0;
  auto counted = [&](const torch::Tensor& t) { ++calls; return ce(t); };
  EXPECT_NEAR(Labels(y).mix(counted).item<double>(), ce(y).item<double>(), 1e-15);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace retort::data
