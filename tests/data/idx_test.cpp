#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "data/data.h"
#include "tests/data/helpers.h"

using retort::test::TempDir;

namespace retort::data {
namespace {

using ::testing::HasSubstr;
using namespace retort::data::testing;

const fs::path kFashionRoot = "/usr/share/datasets/fashion-mnist";

TEST(ReadIdx, PlainRoundTripIdx3) {
  TempDir dir;
  auto t = random_u8({5, 7, 3}, 1);
  write_bytes(dir / "a-idx3-ubyte", idx_bytes(t));
  auto r = read_idx(dir / "a-idx3-ubyte");
  EXPECT_EQ(r.scalar_type(), torch::kUInt8);
  EXPECT_EQ(r.sizes(), t.sizes());
  EXPECT_TRUE(torch::equal(r, t));
}

TEST(ReadIdx, GzipRoundTripIdx1) {
  TempDir dir;
  auto t = random_u8({1000}, 2);
  write_gz(dir / "l.gz", idx_bytes(t));
  auto r = read_idx(dir / "l.gz");
  EXPECT_EQ(r.sizes(), t.sizes());
  EXPECT_TRUE(torch::equal(r, t));
}

TEST(ReadIdx, GzipLargeRoundTripAcrossInflateChunks) {
  TempDir dir;
  auto t = random_u8({300, 28, 28}, 3);  // 235 kB: many inflate calls
  write_gz(dir / "big.gz", idx_bytes(t));
  EXPECT_TRUE(torch::equal(read_idx(dir / "big.gz"), t));
}

TEST(ReadIdx, GzipMultiMemberIsOneStream) {
  TempDir dir;
  auto t = random_u8({4, 10}, 4);
  const std::string bytes = idx_bytes(t);
  write_gz(dir / "m.gz", bytes.substr(0, 13));
  write_gz(dir / "m.gz", bytes.substr(13), "ab");
  EXPECT_TRUE(torch::equal(read_idx(dir / "m.gz"), t));
}

TEST(ReadIdx, WriteIdxRoundTrip) {
  TempDir dir;
  auto t = random_u8({3, 2, 2, 5}, 5);
  write_idx(dir / "w", t);
  EXPECT_EQ(read_bytes(dir / "w"), idx_bytes(t));
  EXPECT_TRUE(torch::equal(read_idx(dir / "w"), t));
  EXPECT_THAT(error_of<Error>([&] { write_idx(dir / "f", torch::zeros({2}, torch::kFloat)); }), HasSubstr("uint8"));
}

TEST(ReadIdx, EmptyDimensionIsAnEmptyTensor) {
  TempDir dir;
  auto t = torch::empty({0, 28, 28}, torch::kUInt8);
  write_bytes(dir / "e", idx_bytes(t));
  EXPECT_EQ(read_idx(dir / "e").sizes(), t.sizes());
}

TEST(ReadIdx, MissingFile) {
  TempDir dir;
  auto msg = error_of<DataError>([&] { read_idx(dir / "nope-idx1-ubyte"); });
  EXPECT_THAT(msg, HasSubstr((dir / "nope-idx1-ubyte").string()));
  EXPECT_THAT(msg, HasSubstr("does not exist"));
}

TEST(ReadIdx, TruncatedPayloadPlain) {
  TempDir dir;
  std::string b = idx_bytes(random_u8({10, 4, 4}, 6));
  write_bytes(dir / "t", b.substr(0, b.size() - 10));
  auto msg = error_of<DataError>([&] { read_idx(dir / "t"); });
  EXPECT_THAT(msg, HasSubstr((dir / "t").string()));
  EXPECT_THAT(msg, HasSubstr("truncated"));
  EXPECT_THAT(msg, HasSubstr("10x4x4 = 160 payload bytes"));
}

TEST(ReadIdx, TruncatedPayloadInsideGzip) {
  TempDir dir;
  std::string b = idx_bytes(random_u8({10, 4, 4}, 7));
  write_gz(dir / "t.gz", b.substr(0, b.size() - 1));  // a valid gzip of a short IDX
  auto msg = error_of<DataError>([&] { read_idx(dir / "t.gz"); });
  EXPECT_THAT(msg, HasSubstr("truncated"));
  EXPECT_THAT(msg, HasSubstr("found 159"));
}

TEST(ReadIdx, TruncatedGzipStream) {
  TempDir dir;
  write_gz(dir / "full.gz", idx_bytes(random_u8({200, 28, 28}, 8)));
  std::string gz = read_bytes(dir / "full.gz");
  write_bytes(dir / "cut.gz", gz.substr(0, gz.size() / 2));
  auto msg = error_of<DataError>([&] { read_idx(dir / "cut.gz"); });
  EXPECT_THAT(msg, HasSubstr((dir / "cut.gz").string()));
  EXPECT_THAT(msg, HasSubstr("truncated"));
  // Only the 8-byte trailer (CRC + length) missing: the payload is complete, still an error.
  write_bytes(dir / "notrailer.gz", gz.substr(0, gz.size() - 8));
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "notrailer.gz"); }), HasSubstr("truncated gzip stream"));
}

TEST(ReadIdx, CorruptGzip) {
  TempDir dir;
  write_gz(dir / "ok.gz", idx_bytes(random_u8({50, 28, 28}, 9)));
  std::string gz = read_bytes(dir / "ok.gz");
  for (size_t i = gz.size() / 2; i < gz.size() / 2 + 64; ++i) gz[i] = static_cast<char>(~gz[i]);
  write_bytes(dir / "bad.gz", gz);
  auto msg = error_of<DataError>([&] { read_idx(dir / "bad.gz"); });
  EXPECT_THAT(msg, HasSubstr((dir / "bad.gz").string()));
  EXPECT_THAT(msg, HasSubstr("corrupt gzip"));
}

TEST(ReadIdx, TruncatedHeader) {
  TempDir dir;
  write_bytes(dir / "h", std::string("\x00\x00\x08\x03\x00\x00\x00\x05\x00", 9));
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "h"); }), HasSubstr("truncated header"));
  write_bytes(dir / "m", std::string("\x00\x00", 2));
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "m"); }), HasSubstr("shorter than the 4-byte magic"));
  write_bytes(dir / "empty", "");
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "empty"); }), HasSubstr("truncated"));
}

TEST(ReadIdx, WrongMagic) {
  TempDir dir;
  std::string b = idx_bytes(random_u8({2, 2}, 10));
  b[0] = 0x50;  // e.g. a PNG or text file
  write_bytes(dir / "w", b);
  auto msg = error_of<DataError>([&] { read_idx(dir / "w"); });
  EXPECT_THAT(msg, HasSubstr("bad magic 0x50 0x00 0x08 0x02"));
  EXPECT_THAT(msg, HasSubstr((dir / "w").string()));
}

TEST(ReadIdx, UnsupportedTypeByte) {
  TempDir dir;
  write_bytes(dir / "f", idx_bytes(random_u8({2, 2}, 11), 0x0D));  // 0x0D = float
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "f"); }),
              HasSubstr("unsupported element type 0x0d (only unsigned byte 0x08"));
}

TEST(ReadIdx, ZeroDimensions) {
  TempDir dir;
  write_bytes(dir / "z", std::string("\x00\x00\x08\x00", 4));
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "z"); }), HasSubstr("0 dimensions"));
}

TEST(ReadIdx, HugeDimensionsFailBeforeAllocating) {
  TempDir dir;
  // 4 x 0xffffffff: overflows; 1 x 0x7fffffff: fits in int64 but not in a 30-byte file.
  write_bytes(dir / "o", std::string("\x00\x00\x08\x04", 4) + std::string(16, '\xff'));
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "o"); }), HasSubstr("exceed"));
  write_bytes(dir / "b", std::string("\x00\x00\x08\x01\x7f\xff\xff\xff", 8) + std::string(22, 'x'));
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "b"); }), HasSubstr("can hold at most 22"));
  write_gz(dir / "b.gz", std::string("\x00\x00\x08\x01\x7f\xff\xff\xff", 8) + std::string(22, 'x'));
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "b.gz"); }), HasSubstr("can hold at most"));
}

TEST(ReadIdx, TrailingBytes) {
  TempDir dir;
  write_bytes(dir / "p", idx_bytes(random_u8({3, 3}, 12)) + "abc");
  auto msg = error_of<DataError>([&] { read_idx(dir / "p"); });
  EXPECT_THAT(msg, HasSubstr("3 trailing bytes after the 9-byte payload"));
  EXPECT_THAT(msg, HasSubstr((dir / "p").string()));
  write_gz(dir / "p.gz", idx_bytes(random_u8({3, 3}, 12)) + "abcde");
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "p.gz"); }), HasSubstr("5 trailing bytes"));
  // Non-gzip bytes after the gzip stream itself.
  write_gz(dir / "g.gz", idx_bytes(random_u8({3, 3}, 12)));
  write_bytes(dir / "g2.gz", read_bytes(dir / "g.gz") + "junk");
  EXPECT_THAT(error_of<DataError>([&] { read_idx(dir / "g2.gz"); }), HasSubstr("4 bytes of garbage after"));
}

TEST(ReadIdx, ParseIdxNamesTheSource) {
  EXPECT_THAT(error_of<DataError>([] { parse_idx(std::string("\x01\x02\x03\x04", 4), "<memory>"); }),
              HasSubstr("IDX file '<memory>'"));
}

// ------------------------------------------------------------------------------------
// Datasets
// ------------------------------------------------------------------------------------

/// Writes a small split in `dir`: images [n, h, w], labels [m] (gz chooses the .gz names).
void write_split(const fs::path& dir, const std::string& prefix, const torch::Tensor& images,
                 const torch::Tensor& labels, bool gz_images, bool gz_labels) {
  const std::string img = prefix + "-images-idx3-ubyte", lab = prefix + "-labels-idx1-ubyte";
  if (gz_images) write_gz(dir / (img + ".gz"), idx_bytes(images)); else write_bytes(dir / img, idx_bytes(images));
  if (gz_labels) write_gz(dir / (lab + ".gz"), idx_bytes(labels)); else write_bytes(dir / lab, idx_bytes(labels));
}

TEST(IdxDataset, LoadsMixedPlainAndGzip) {
  TempDir dir;
  auto images = random_u8({20, 6, 5}, 13);
  auto labels = torch::arange(20, torch::kInt64).remainder(10).to(torch::kUInt8);
  write_split(dir.path(), "train", images, labels, /*gz_images=*/true, /*gz_labels=*/false);
  write_split(dir.path(), "t10k", images.narrow(0, 0, 7), labels.narrow(0, 0, 7), false, true);
  Dataset d = load_idx_dataset(dir.path(), "train");
  EXPECT_EQ(d.size(), 20);
  EXPECT_EQ(d.images.sizes(), (std::vector<int64_t>{20, 1, 6, 5}));
  EXPECT_EQ(d.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(d.labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(d.images.squeeze(1), images));
  EXPECT_TRUE(torch::equal(d.labels, labels.to(torch::kInt64)));
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(load_idx_dataset(dir.path(), "test").size(), 7);
}

TEST(IdxDataset, LabelCountMismatch) {
  TempDir dir;
  write_split(dir.path(), "train", random_u8({20, 4, 4}, 14), torch::zeros({19}, torch::kUInt8), false, false);
  auto msg = error_of<DataError>([&] { load_idx_dataset(dir.path(), "train"); });
  EXPECT_THAT(msg, HasSubstr("mismatch"));
  EXPECT_THAT(msg, HasSubstr("20 images"));
  EXPECT_THAT(msg, HasSubstr("19 labels"));
}

TEST(IdxDataset, LabelOutOfRange) {
  TempDir dir;
  auto labels = torch::zeros({8}, torch::kUInt8);
  labels[3] = 10;
  labels[6] = 200;
  write_split(dir.path(), "train", random_u8({8, 4, 4}, 15), labels, false, true);
  auto msg = error_of<DataError>([&] { load_idx_dataset(dir.path(), "train"); });
  EXPECT_THAT(msg, HasSubstr("label 10 of sample 3"));
  EXPECT_THAT(msg, HasSubstr("num_classes 10"));
  EXPECT_THAT(msg, HasSubstr("2 such labels"));
  EXPECT_THAT(msg, HasSubstr("train-labels-idx1-ubyte.gz"));
  // With more classes the same files are fine; 256 classes accept every uint8 label.
  EXPECT_EQ(load_idx_dataset(dir.path(), "train", 201).num_classes, 201);
  EXPECT_EQ(load_idx_dataset(dir.path(), "train", 256).size(), 8);
  EXPECT_THAT(error_of<DataError>([&] { load_idx_dataset(dir.path(), "train", 200); }), HasSubstr("label 200 of sample 6"));
  EXPECT_THAT(error_of<ConfigError>([&] { load_idx_dataset(dir.path(), "train", 0); }), HasSubstr("num_classes"));
  EXPECT_THAT(error_of<ConfigError>([&] { load_idx_dataset(dir.path(), "train", 257); }), HasSubstr("[1, 256]"));
}

TEST(IdxDataset, WrongRankFiles) {
  TempDir dir;
  write_split(dir.path(), "train", random_u8({8, 16}, 16), torch::zeros({8}, torch::kUInt8), false, false);
  EXPECT_THAT(error_of<DataError>([&] { load_idx_dataset(dir.path(), "train"); }), HasSubstr("expected 3 dims"));
  write_split(dir.path(), "t10k", random_u8({8, 4, 4}, 16), torch::zeros({8, 1}, torch::kUInt8), false, false);
  EXPECT_THAT(error_of<DataError>([&] { load_idx_dataset(dir.path(), "test"); }), HasSubstr("expected 1 dim"));
}

TEST(IdxDataset, MissingRootMentionsDebianPackage) {
  TempDir dir;
  auto msg = error_of<DataError>([&] { load_idx_dataset(dir / "absent", "train"); });
  EXPECT_THAT(msg, HasSubstr((dir / "absent").string()));
  EXPECT_THAT(msg, HasSubstr("apt install dataset-fashion-mnist"));
}

TEST(IdxDataset, MissingFileMentionsPathAndDebianPackage) {
  TempDir dir;
  write_bytes(dir / "train-images-idx3-ubyte", idx_bytes(random_u8({2, 2, 2}, 17)));
  auto msg = error_of<DataError>([&] { load_idx_dataset(dir.path(), "train"); });
  EXPECT_THAT(msg, HasSubstr((dir / "train-labels-idx1-ubyte").string()));
  EXPECT_THAT(msg, HasSubstr("train-labels-idx1-ubyte.gz"));
  EXPECT_THAT(msg, HasSubstr("Debian package dataset-fashion-mnist"));

  DataOptions opts;
  opts.root = dir.path();
  opts.name = "mnist";
  msg = error_of<DataError>([&] { load_dataset(opts, "train"); });
  EXPECT_THAT(msg, HasSubstr("MNIST IDX files"));
  EXPECT_THAT(msg, ::testing::Not(HasSubstr("fashion")));
  opts.name = "fashion-mnist";
  EXPECT_THAT(error_of<DataError>([&] { load_dataset(opts, "train"); }), HasSubstr("apt install dataset-fashion-mnist"));
}

TEST(IdxDataset, BadNameAndSplit) {
  TempDir dir;
  EXPECT_THAT(error_of<ConfigError>([&] { load_idx_dataset(dir.path(), "validation"); }),
              HasSubstr("unknown data split 'validation'"));
  DataOptions opts;
  opts.name = "cifar10";
  EXPECT_THAT(error_of<ConfigError>([&] { load_dataset(opts, "train"); }), HasSubstr("unknown dataset 'cifar10'"));
  EXPECT_THAT(error_of<ConfigError>([&] { pixel_stats("cifar10"); }), HasSubstr("cifar10"));
}

TEST(IdxDataset, HeadKeepsPrefixAndSharesStorage) {
  Dataset d;
  d.images = random_u8({10, 1, 3, 3}, 18);
  d.labels = torch::arange(10, torch::kInt64);
  Dataset h = head(d, 4);
  EXPECT_EQ(h.size(), 4);
  EXPECT_TRUE(torch::equal(h.labels, torch::arange(4, torch::kInt64)));
  EXPECT_EQ(h.images.data_ptr(), d.images.data_ptr());
  EXPECT_EQ(head(d, 0).size(), 10);
  EXPECT_EQ(head(d, -3).size(), 10);
  EXPECT_EQ(head(d, 11).size(), 10);
  EXPECT_EQ(Dataset{}.size(), 0);
}

TEST(IdxDataset, LoadDatasetAppliesSubset) {
  TempDir dir;
  write_split(dir.path(), "train", random_u8({30, 4, 4}, 19), torch::zeros({30}, torch::kUInt8), true, true);
  DataOptions opts;
  opts.root = dir.path();
  opts.subset = 12;
  EXPECT_EQ(load_dataset(opts, "train").size(), 12);
  opts.subset = 0;
  EXPECT_EQ(load_dataset(opts, "train").size(), 30);
}

TEST(DataOptions, Validate) {
  DataOptions ok;
  EXPECT_NO_THROW(ok.validate());
  auto bad = [](auto edit) {
    DataOptions o;
    edit(o);
    return error_of<ConfigError>([&] { o.validate(); });
  };
  EXPECT_THAT(bad([](DataOptions& o) { o.batch_size = 0; }), HasSubstr("data.batch_size must be > 0, got 0"));
  EXPECT_THAT(bad([](DataOptions& o) { o.eval_batch_size = -1; }), HasSubstr("data.eval_batch_size"));
  EXPECT_THAT(bad([](DataOptions& o) { o.prefetch = -1; }), HasSubstr("data.prefetch"));
  EXPECT_THAT(bad([](DataOptions& o) { o.subset = -5; }), HasSubstr("data.subset"));
  EXPECT_THAT(bad([](DataOptions& o) { o.root = ""; }), HasSubstr("data.root"));
  EXPECT_THAT(bad([](DataOptions& o) { o.mixup = -0.5; }), HasSubstr("data.mixup must be a finite number >= 0"));
  EXPECT_THAT(bad([](DataOptions& o) { o.mixup = std::nan(""); }), HasSubstr("data.mixup"));
  EXPECT_THAT(bad([](DataOptions& o) { o.name = "x"; }), HasSubstr("data.name"));
}

TEST(FashionMnist, RealFilesShapesLabelsAndPixelStats) {
  if (!fs::exists(kFashionRoot / "train-images-idx3-ubyte.gz")) GTEST_SKIP() << kFashionRoot << " absent";
  auto raw = read_idx(kFashionRoot / "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(raw.sizes(), (std::vector<int64_t>{10000, 28, 28}));
  EXPECT_EQ(read_idx(kFashionRoot / "t10k-labels-idx1-ubyte.gz").sizes(), (std::vector<int64_t>{10000}));

  Dataset train = load_idx_dataset(kFashionRoot, "train");
  Dataset test = load_idx_dataset(kFashionRoot, "test");
  EXPECT_EQ(train.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(test.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(train.labels.min().item<int64_t>(), 0);
  EXPECT_EQ(train.labels.max().item<int64_t>(), 9);
  // Fashion-MNIST is balanced: 6000 / 1000 of each class.
  EXPECT_TRUE(torch::equal(torch::bincount(train.labels), torch::full({10}, 6000, torch::kInt64)));
  EXPECT_TRUE(torch::equal(torch::bincount(test.labels), torch::full({10}, 1000, torch::kInt64)));
  // The normalization constants match the data (from the histogram of the 47M bytes).
  auto count = torch::bincount(train.images.flatten()).to(torch::kFloat64);  // [256]
  auto value = torch::arange(256, torch::kFloat64) / 255.0;
  const double n = count.sum().item<double>();
  const double mean = (count * value).sum().item<double>() / n;
  const double var = (count * (value - mean) * (value - mean)).sum().item<double>() / (n - 1);
  const PixelStats s = pixel_stats("fashion-mnist");
  EXPECT_NEAR(mean, s.mean, 1e-3);
  EXPECT_NEAR(std::sqrt(var), s.stddev, 1e-3);
}

}  // namespace
}  // namespace retort::data
