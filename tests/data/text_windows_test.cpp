// Token windows as a language model's samples: aligned blocks and seeded random offsets,
// next-token targets, the same global batches on any world size, the token files found
// under data.root.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "data/data.h"
#include "tests/data/helpers.h"

using namespace retort;
using namespace retort::data;
using namespace retort::data::testing;

namespace {

/// A token file of 0, 1, ..., n-1 (mod 256) in retort's format; returns its path.
fs::path counting_tokens(const TempDir& dir, const std::string& name, int64_t n) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = static_cast<int32_t>(i % 256);
  TokenFileInfo info;
  info.vocab_size = 256;
  info.tokenizer = "bytes";
  info.text_bytes = n;
  write_token_file(dir / name, tokens, info);
  return dir / name;
}

}  // namespace

TEST(TextWindows, BlocksAreAlignedAndTargetsAreTheNextTokens) {
  TempDir dir;
  auto file = std::make_shared<const TokenFile>(counting_tokens(dir, "t.tokens", 101));
  TextWindows w(file, 10, WindowSampling::kBlocks, 0);
  EXPECT_EQ(w.size(), 10);  // (101 - 1) / 10
  auto [x, y] = w.batch({0, 9, 3}, /*epoch=*/5);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(x.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(x[1], torch::arange(90, 100, torch::kInt64)));
  EXPECT_TRUE(torch::equal(y[1], torch::arange(91, 101, torch::kInt64)));
  EXPECT_TRUE(torch::equal(x[2], torch::arange(30, 40, torch::kInt64)));
}

TEST(TextWindows, RandomOffsetsArePureFunctionsOfSeedEpochAndIndex) {
  TempDir dir;
  auto file = std::make_shared<const TokenFile>(counting_tokens(dir, "t.tokens", 200));
  TextWindows a(file, 8, WindowSampling::kRandom, 42), b(file, 8, WindowSampling::kRandom, 42),
      other(file, 8, WindowSampling::kRandom, 43);
  std::set<int64_t> starts;
  int64_t same_as_other_seed = 0, same_as_next_epoch = 0;
  for (int64_t i = 0; i < a.size(); ++i) {
    const int64_t s = a.start(1, i);
    EXPECT_EQ(s, b.start(1, i));
    EXPECT_GE(s, 0);
    EXPECT_LE(s + 8 + 1, 200);
    starts.insert(s);
    same_as_other_seed += s == other.start(1, i);
    same_as_next_epoch += s == a.start(2, i);
  }
  EXPECT_GT(starts.size(), 15u);  // 24 draws over 192 offsets
  EXPECT_LT(same_as_other_seed, 4);
  EXPECT_LT(same_as_next_epoch, 4);
  auto [x, y] = a.batch({7}, 1);
  EXPECT_TRUE(torch::equal(y[0].narrow(0, 0, 7), x[0].narrow(0, 1, 7)));
}

TEST(TextWindows, ShortFilesAndBadContextsAreNamed) {
  TempDir dir;
  auto file = std::make_shared<const TokenFile>(counting_tokens(dir, "short.tokens", 5));
  auto msg = error_of<DataError>([&] { TextWindows(file, 8, WindowSampling::kBlocks, 0); });
  EXPECT_NE(msg.find("short.tokens"), std::string::npos) << msg;
  msg = error_of<ConfigError>([&] { TextWindows(file, 0, WindowSampling::kBlocks, 0); });
  EXPECT_NE(msg.find("model.context"), std::string::npos) << msg;
}

TEST(TextWindows, GlobalBatchesAreTheSameOnAnyWorldSize) {
  TempDir dir;
  counting_tokens(dir, "train.tokens", 4001);
  counting_tokens(dir, "val.tokens", 801);
  DataOptions opts;
  opts.name = "text";
  opts.root = dir.string();
  opts.tokenizer.name = "bytes";
  const auto train = load_dataset(opts, "train", {16, 256, 7});
  ASSERT_TRUE(train.text);
  EXPECT_EQ(train.size(), 250);
  LoaderOptions lo;
  lo.prefetch = 0;
  DistributedSampler one(train.size(), 12, 0, 1, 3);
  DistributedSampler r0(train.size(), 12, 0, 2, 3), r1(train.size(), 12, 1, 2, 3);
  Loader l(train, one, lo), l0(train, r0, lo), l1(train, r1, lo);
  for (int step = 0; step < 5; ++step) {
    auto a = l.next(), b0 = l0.next(), b1 = l1.next();
    ASSERT_TRUE(a && b0 && b1);
    EXPECT_TRUE(torch::equal(a->x, torch::cat({b0->x, b1->x})));
    EXPECT_TRUE(torch::equal(a->y, torch::cat({b0->y, b1->y})));
  }
  opts.eval_tokens = 100;
  const auto val = load_dataset(opts, "test", {16, 256, 7});
  EXPECT_EQ(val.size(), 6);  // 100 tokens: 6 aligned windows of 16
  EXPECT_EQ(val.text->start(3, 2), 32);
}

TEST(TextWindows, MissingTokenFilesSayHowToMakeThem) {
  TempDir dir;
  DataOptions opts;
  opts.name = "text";
  opts.root = dir.string();
  auto msg = error_of<DataError>([&] { load_dataset(opts, "train", {16, 256, 0}); });
  EXPECT_NE(msg.find("retort tokenize"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.string()), std::string::npos) << msg;
  msg = error_of<ConfigError>([&] { load_dataset(opts, "train"); });
  EXPECT_NE(msg.find("model.name"), std::string::npos) << msg;
  opts.tokenizer.name = "gpt2";
  opts.tokenizer.dir = dir.string();
  counting_tokens(dir, "train.tokens", 100);
  msg = error_of<ConfigError>([&] { load_dataset(opts, "train", {16, 256, 0}); });
  EXPECT_NE(msg.find("made with bytes"), std::string::npos) << msg;
}
