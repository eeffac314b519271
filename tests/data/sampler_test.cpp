#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "core/error.h"
#include "data/sampler.h"
#include "tests/data/helpers.h"

namespace retort::data {
namespace {

using ::testing::HasSubstr;
using retort::data::testing::error_of;

std::vector<DistributedSampler::Shard> drain(DistributedSampler& s) {
  std::vector<DistributedSampler::Shard> out;
  while (auto shard = s.next()) out.push_back(*shard);
  return out;
}

std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

TEST(EpochPermutation, GoldenValuesFromTheReferenceScript) {
  // tests/data/golden_sampler.py, an independent Python implementation.
  EXPECT_EQ(epoch_permutation(10, 0, 0), (std::vector<int64_t>{1, 2, 5, 7, 0, 8, 4, 3, 9, 6}));
  EXPECT_EQ(epoch_permutation(7, 12345, 3), (std::vector<int64_t>{3, 6, 0, 2, 5, 1, 4}));
  EXPECT_EQ(epoch_permutation(12, ~uint64_t{0}, 1), (std::vector<int64_t>{9, 10, 4, 1, 3, 7, 2, 8, 0, 11, 5, 6}));
}

TEST(EpochPermutation, IsAPermutationAndUniformEnough) {
  for (int64_t n : {1, 2, 3, 100, 1001}) EXPECT_EQ(sorted(epoch_permutation(n, 7, 2)), iota(n)) << n;
  // Position of element 0 over many epochs of n = 4: each of the 4 places about 1/4 of the time.
  std::vector<int> where(4, 0);
  for (int64_t e = 0; e < 4000; ++e) {
    auto p = epoch_permutation(4, 99, e);
    where[std::find(p.begin(), p.end(), 0) - p.begin()]++;
  }
  for (int c : where) EXPECT_NEAR(c, 1000, 120);
}

TEST(SplitMix64, BelowIsInRangeAndUnbiased) {
  SplitMix64 rng(5);
  std::vector<int> counts(3, 0);
  for (int i = 0; i < 30000; ++i) counts[rng.below(3)]++;
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(rng.below(1), 0u);
  const uint64_t big = (uint64_t{1} << 63) + 12345;
  for (int i = 0; i < 1000; ++i) EXPECT_LT(rng.below(big), big);
}

TEST(DistributedSampler, EachEpochCoversEveryIndexOnce) {
  DistributedSampler s(103, 10, 0, 1, /*seed=*/42);
  EXPECT_EQ(s.batches_per_epoch(), 11);
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t e = 0; e < 3; ++e) {
    s.set_epoch(e);
    std::vector<int64_t> all;
    for (auto& shard : drain(s)) all.insert(all.end(), shard.indices.begin(), shard.indices.end());
    EXPECT_EQ(sorted(all), iota(103)) << "epoch " << e;
    EXPECT_EQ(all, s.order());
    epochs.push_back(all);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
}

TEST(DistributedSampler, OrderIsAFunctionOfSeedAndEpoch) {
  DistributedSampler a(500, 32, 0, 1, 7), b(500, 32, 0, 1, 7), c(500, 32, 0, 1, 8);
  EXPECT_EQ(a.order(), b.order());
  EXPECT_NE(a.order(), c.order());
  auto e0 = a.order();
  a.set_epoch(1);
  EXPECT_NE(a.order(), e0);
  a.set_epoch(0);
  EXPECT_EQ(a.order(), e0);
  EXPECT_EQ(a.order(), epoch_permutation(500, 7, 0));
  DistributedSampler plain(9, 4, 0, 1, 7, /*shuffle=*/false);
  EXPECT_EQ(plain.order(), iota(9));
  plain.set_epoch(5);
  EXPECT_EQ(plain.order(), iota(9));
}

TEST(DistributedSampler, ShardsUnionToTheSingleProcessBatchForAnyWorld) {
  // 103 = 10 * 10 + 3: the last batch is uneven for w = 2 and 3; 101 leaves a last batch
  // of 1, so with w = 3 two ranks get empty shards.
  for (int64_t n : {103, 101, 60}) {
    DistributedSampler single(n, 10, 0, 1, 3);
    single.set_epoch(2);
    const auto reference = drain(single);
    for (int w : {1, 2, 3}) {
      std::vector<std::vector<DistributedSampler::Shard>> ranks;
      for (int r = 0; r < w; ++r) {
        DistributedSampler s(n, 10, r, w, 3);
        s.set_epoch(2);
        ranks.push_back(drain(s));
        ASSERT_EQ(ranks.back().size(), reference.size()) << "n " << n << " w " << w;
      }
      for (size_t k = 0; k < reference.size(); ++k) {
        std::vector<int64_t> joined;
        size_t smallest = SIZE_MAX, largest = 0;
        for (int r = 0; r < w; ++r) {
          const auto& shard = ranks[r][k];
          EXPECT_EQ(shard.step_in_epoch, static_cast<int64_t>(k));
          EXPECT_EQ(shard.global_batch_size, reference[k].global_batch_size);
          joined.insert(joined.end(), shard.indices.begin(), shard.indices.end());
          smallest = std::min(smallest, shard.indices.size());
          largest = std::max(largest, shard.indices.size());
        }
        EXPECT_EQ(joined, reference[k].indices) << "n " << n << " w " << w << " step " << k;
        EXPECT_LE(largest - smallest, 1u);
      }
    }
  }
}

TEST(DistributedSampler, LastBatchKeptOrDropped) {
  DistributedSampler keep(103, 10, 0, 1, 1, true, /*drop_last=*/false);
  auto kept = drain(keep);
  ASSERT_EQ(kept.size(), 11u);
  EXPECT_EQ(kept.back().global_batch_size, 3);
  EXPECT_EQ(kept.back().indices.size(), 3u);

  DistributedSampler drop(103, 10, 1, 2, 1, true, /*drop_last=*/true);
  EXPECT_EQ(drop.batches_per_epoch(), 10);
  auto dropped = drain(drop);
  ASSERT_EQ(dropped.size(), 10u);
  for (auto& shard : dropped) {
    EXPECT_EQ(shard.global_batch_size, 10);
    EXPECT_EQ(shard.indices.size(), 5u);
  }
  // Same permutation: the dropped run is a prefix of the kept one.
  EXPECT_EQ(dropped[4].indices, std::vector<int64_t>(kept[4].indices.begin() + 5, kept[4].indices.end()));
  DistributedSampler exact(100, 10, 0, 1, 1, true, true);
  EXPECT_EQ(exact.batches_per_epoch(), 10);
}

TEST(DistributedSampler, EndOfEpochIsStickyUntilSetEpoch) {
  DistributedSampler s(5, 2, 0, 1);
  EXPECT_EQ(drain(s).size(), 3u);
  EXPECT_TRUE(s.exhausted());
  EXPECT_EQ(s.cursor(), 3);
  EXPECT_FALSE(s.next());
  EXPECT_FALSE(s.next());
  EXPECT_EQ(s.epoch(), 0);
  s.set_epoch(s.epoch() + 1);
  EXPECT_EQ(s.cursor(), 0);
  EXPECT_EQ(s.epoch(), 1);
  auto first = s.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->step_in_epoch, 0);
  EXPECT_THAT(error_of<Error>([&] { s.set_epoch(-1); }), HasSubstr("epoch must be >= 0"));
}

TEST(DistributedSampler, StateRoundTripResumesAtTheNextBatch) {
  DistributedSampler original(250, 16, 0, 1, 11);
  original.set_epoch(3);
  for (int i = 0; i < 5; ++i) original.next();
  const auto state = original.state_dict();
  EXPECT_EQ(state.at("epoch").item<int64_t>(), 3);
  EXPECT_EQ(state.at("cursor").item<int64_t>(), 5);
  const auto rest = drain(original);

  // Same world.
  DistributedSampler resumed(250, 16, 0, 1, 11);
  resumed.load_state_dict(state);
  EXPECT_EQ(resumed.epoch(), 3);
  EXPECT_EQ(resumed.cursor(), 5);
  auto again = drain(resumed);
  ASSERT_EQ(again.size(), rest.size());
  for (size_t k = 0; k < rest.size(); ++k) {
    EXPECT_EQ(again[k].indices, rest[k].indices);
    EXPECT_EQ(again[k].step_in_epoch, rest[k].step_in_epoch);
  }
  // Another world size continues with the same global batches.
  DistributedSampler r0(250, 16, 0, 2, 11), r1(250, 16, 1, 2, 11);
  r0.load_state_dict(state);
  r1.load_state_dict(state);
  auto a = r0.next(), b = r1.next();
  std::vector<int64_t> joined = a->indices;
  joined.insert(joined.end(), b->indices.begin(), b->indices.end());
  EXPECT_EQ(joined, rest[0].indices);
  // A state taken at the end of an epoch says so.
  DistributedSampler end(250, 16, 0, 1, 11);
  end.load_state_dict(original.state_dict());
  EXPECT_TRUE(end.exhausted());
  EXPECT_FALSE(end.next());
  // Seeds above 2^63 survive the int64 storage.
  DistributedSampler high(250, 16, 0, 1, ~uint64_t{0} - 1);
  DistributedSampler high2(250, 16, 0, 1, ~uint64_t{0} - 1);
  high2.load_state_dict(high.state_dict());
}

TEST(DistributedSampler, LoadStateRejectsMismatches) {
  DistributedSampler s(250, 16, 0, 1, 11);
  const auto good = s.state_dict();
  auto with = [&](const std::string& key, torch::Tensor v) {
    auto st = good;
    st[key] = v;
    return error_of<DataError>([&] { DistributedSampler(250, 16, 0, 1, 11).load_state_dict(st); });
  };
  EXPECT_THAT(with("dataset_size", torch::tensor(int64_t{251})), HasSubstr("dataset_size is 251 in the checkpoint but 250 here"));
  EXPECT_THAT(with("global_batch", torch::tensor(int64_t{32})), HasSubstr("global_batch is 32"));
  EXPECT_THAT(with("seed", torch::tensor(int64_t{12})), HasSubstr("seed is 12"));
  EXPECT_THAT(with("shuffle", torch::tensor(int64_t{0})), HasSubstr("shuffle"));
  EXPECT_THAT(with("drop_last", torch::tensor(int64_t{1})), HasSubstr("drop_last"));
  EXPECT_THAT(with("cursor", torch::tensor(int64_t{17})), HasSubstr("cursor 17 outside [0, 16]"));
  EXPECT_THAT(with("epoch", torch::tensor(int64_t{-2})), HasSubstr("epoch must be >= 0"));
  EXPECT_THAT(with("epoch", torch::tensor(1.5)), HasSubstr("'epoch' must be a one-element int64"));
  EXPECT_THAT(with("cursor", torch::zeros({2}, torch::kInt64)), HasSubstr("'cursor' must be a one-element"));
  auto missing = good;
  missing.erase("cursor");
  EXPECT_THAT(error_of<DataError>([&] { s.load_state_dict(missing); }), HasSubstr("missing key 'cursor'"));
  // A failed load leaves the sampler as it was.
  EXPECT_EQ(s.cursor(), 0);
}

TEST(DistributedSampler, ConstructorRejectsBadArguments) {
  auto msg = [](auto make) { return error_of<ConfigError>(make); };
  EXPECT_THAT(msg([] { DistributedSampler(0, 4); }), HasSubstr("dataset is empty"));
  EXPECT_THAT(msg([] { DistributedSampler(10, 0); }), HasSubstr("global batch size must be >= 1, got 0"));
  EXPECT_THAT(msg([] { DistributedSampler(10, 4, 0, 0); }), HasSubstr("world size must be >= 1"));
  EXPECT_THAT(msg([] { DistributedSampler(10, 4, 2, 2); }), HasSubstr("rank 2 outside [0, 2)"));
  EXPECT_THAT(msg([] { DistributedSampler(10, 4, -1, 2); }), HasSubstr("rank -1"));
  EXPECT_THAT(msg([] { DistributedSampler(10, 2, 0, 4); }), HasSubstr("smaller than the world size 4"));
  EXPECT_THAT(msg([] { DistributedSampler(10, 16, 0, 1, 0, true, true); }), HasSubstr("leaves no batch"));
}

}  // namespace
}  // namespace retort::data
