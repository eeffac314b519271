#include "trainer/tensorboard.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "tests/common/expect.h"
#include "tests/common/temp_dir.h"
#include "tests/trainer/helpers.h"
#include "trainer/metrics.h"

using retort::test::TempDir;

namespace fs = std::filesystem;
using namespace retort;
using namespace retort::trainer;

namespace {

uint32_t crc_of(const std::string& bytes) { return crc32c(bytes.data(), bytes.size()); }

std::string host() {
  char buf[256] = {0};
  return ::gethostname(buf, sizeof buf - 1) == 0 ? buf : "";
}

// (tag, step, value) of each scalar event, in file order.
using Scalar = std::tuple<std::string, int64_t, float>;
std::vector<Scalar> scalars_of(const std::vector<tensorboard::Event>& events) {
  std::vector<Scalar> out;
  for (const auto& e : events)
    for (const auto& v : e.summary().value()) out.emplace_back(v.tag(), e.step(), v.simple_value());
  return out;
}

}  // namespace

TEST(Crc32c, CheckValueAndIscsiVectors) {
  EXPECT_EQ(crc_of("123456789"), 0xE3069283u);
  EXPECT_EQ(test::bitwise_crc32c("123456789"), 0xE3069283u);  // the tests' own checker too
  EXPECT_EQ(crc_of(""), 0u);
  // RFC 3720 (iSCSI), appendix B.4: 32 bytes of zeros, of ones, incrementing, decrementing.
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(crc_of(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc_of(std::string(32, '\xFF')), 0x62A8AB43u);
  EXPECT_EQ(crc_of(up), 0x46DD794Eu);
  EXPECT_EQ(crc_of(down), 0x113FDB5Cu);
}

TEST(Crc32c, AgreesWithABitwiseCrcAndContinuesAcrossPieces) {
  std::mt19937 gen(3);
  for (size_t n = 0; n < 300; n += 7) {
    std::string bytes(n, '\0');
    for (auto& b : bytes) b = static_cast<char>(gen());
    EXPECT_EQ(crc_of(bytes), test::bitwise_crc32c(bytes)) << n << " bytes";
    EXPECT_EQ(masked_crc32c(bytes.data(), n), test::masked(test::bitwise_crc32c(bytes))) << n << " bytes";
    const size_t half = n / 3;
    EXPECT_EQ(crc32c(bytes.data() + half, n - half, crc32c(bytes.data(), half)), crc_of(bytes)) << n << " bytes";
  }
}

TEST(EventWriter, FileDecodesWithTensorBoardsMessages) {
  const TempDir run_dir("tensorboard-decode");
  const auto dir = run_dir / "a" / "tensorboard";  // open() makes the folders
  const double before = std::floor(unix_seconds());
  struct Written {
    std::string tag;
    double value;
    int64_t step;
    double wall_time;
  };
  const std::vector<Written> written = {
      {"train/loss", 2.5, 1, 1.7e9 + 0.25},
      {"train/lr", 3e-4, 1, 1.7e9 + 0.25},
      {"eval/accuracy", 0.875, 300, 1.7e9 + 1},
      {"a tag/with spaces and \xC3\xA9", -1e30, int64_t{1} << 40, 0.5},  // multi-byte varints
      {"zero", 0.0, 0, 0.0},                                              // fields at their defaults
      {"negative step", 1.0, -3, 2.0},                                    // a ten-byte varint
      {std::string(300, 't'), 7.0, 2, 3.0},                               // a two-byte length
  };
  EventWriter writer;
  writer.open(dir);
  for (const auto& w : written) writer.add_scalar(w.tag, w.value, w.step, w.wall_time);
  writer.close();

  const auto files = test::events_files(dir);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0], writer.path());
  // events.out.tfevents.<unix seconds>.<host>
  const std::string name = files[0].filename().string(), prefix = "events.out.tfevents.";
  ASSERT_EQ(name.rfind(prefix, 0), 0u) << name;
  size_t digits = 0;
  const long long seconds = std::stoll(name.substr(prefix.size()), &digits);
  EXPECT_GE(seconds, before);
  EXPECT_LE(seconds, unix_seconds());
  EXPECT_EQ(name.substr(prefix.size() + digits), "." + host());

  const auto events = test::read_events(files[0]);
  ASSERT_EQ(events.size(), written.size() + 1);
  EXPECT_EQ(events[0].what_case(), tensorboard::Event::kFileVersion);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_GE(events[0].wall_time(), before);
  EXPECT_LE(events[0].wall_time(), unix_seconds());
  for (size_t i = 0; i < written.size(); ++i) {
    const auto& e = events[i + 1];
    const auto& w = written[i];
    ASSERT_EQ(e.what_case(), tensorboard::Event::kSummary) << w.tag;
    ASSERT_EQ(e.summary().value_size(), 1) << w.tag;
    const auto& v = e.summary().value(0);
    EXPECT_EQ(v.tag(), w.tag);
    EXPECT_EQ(v.value_case(), tensorboard::Summary::Value::kSimpleValue) << w.tag;
    EXPECT_EQ(v.simple_value(), static_cast<float>(w.value)) << w.tag;
    EXPECT_EQ(e.step(), w.step) << w.tag;
    EXPECT_EQ(e.wall_time(), w.wall_time) << w.tag;
  }
}

TEST(EventWriter, FlushWritesTheQueuedRecords) {
  const TempDir dir("tensorboard-flush");
  EventWriter writer;
  writer.open(dir);
  const auto header = fs::file_size(writer.path());
  EXPECT_EQ(test::read_events(writer.path()).size(), 1u);  // the version record is there at once
  writer.add_scalar("x", 1, 1, 1);
  writer.add_scalar("x", 2, 2, 2);
  EXPECT_EQ(fs::file_size(writer.path()), header);
  writer.flush();
  EXPECT_EQ(scalars_of(test::read_events(writer.path())), (std::vector<Scalar>{{"x", 1, 1.f}, {"x", 2, 2.f}}));
  writer.add_scalar("x", 3, 3, 3);
  writer.close();
  EXPECT_EQ(test::read_events(writer.path()).size(), 4u);
  EXPECT_THROW(writer.add_scalar("x", 4, 4, 4), Error);
}

// A write that stops part-way (here at the file-size limit) leaves only whole records, the
// error names the file, and the writer carries on after it.
TEST(EventWriter, FailedWriteLeavesWholeRecordsOnly) {
  const TempDir dir("tensorboard-full");
  EventWriter writer;
  writer.open(dir);
  writer.add_scalar("kept", 1, 1, 1);
  writer.flush();
  const auto whole = fs::file_size(writer.path());
  for (int i = 0; i < 20; ++i) writer.add_scalar("lost", i, i, i);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = whole + 50;  // room for part of the first lost record only
  const auto previous = std::signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG
  const bool limited = ::setrlimit(RLIMIT_FSIZE, &small) == 0;
  const std::string error = test::error_of([&] { writer.flush(); });
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous);
  ASSERT_TRUE(limited);
  EXPECT_NE(error.find("'" + writer.path().string() + "'"), std::string::npos) << error;
  EXPECT_EQ(fs::file_size(writer.path()), whole);
  writer.add_scalar("after", 2, 2, 2);
  writer.close();
  EXPECT_EQ(scalars_of(test::read_events(writer.path())), (std::vector<Scalar>{{"kept", 1, 1.f}, {"after", 2, 2.f}}));
}

TEST(EventWriter, EachOpenStartsAnotherFileInTheFolder) {
  const TempDir dir("tensorboard-reopen");
  for (int run = 1; run <= 2; ++run) {  // as a resumed run does, within the same second
    EventWriter writer;
    writer.open(dir);
    writer.add_scalar("x", run, run, 0);
  }
  const auto files = test::events_files(dir);
  ASSERT_EQ(files.size(), 2u);
  for (int run = 1; run <= 2; ++run) {
    const auto events = test::read_events(files[run - 1]);
    EXPECT_EQ(events.at(0).file_version(), "brain.Event:2");
    EXPECT_EQ(scalars_of(events), (std::vector<Scalar>{{"x", run, static_cast<float>(run)}})) << files[run - 1];
  }
}

TEST(EventWriter, UnwritableFolderErrorNamesThePath) {
  const TempDir dir("tensorboard-unwritable");
  fs::create_directories(dir / "run");
  retort::write_file_synced(dir / "file", "not a folder\n");
  const auto below_a_file = dir / "file" / "tensorboard";
  EventWriter writer;
  test::expect_error<Error>([&] { writer.open(below_a_file); }, {below_a_file.string()});
  EXPECT_FALSE(writer.is_open());
  // The run directory's tensorboard/ taken by a file: the run stops before training.
  retort::write_file_synced(dir / "run" / "tensorboard", "not a folder\n");
  test::expect_error<Error>([&] { Metrics(dir / "run", "off"); }, {(dir / "run" / "tensorboard").string()});
}

TEST(Metrics, EveryNumericFieldIsAScalarTaggedByKind) {
  const TempDir dir("tensorboard-metrics");
  const float inf = std::numeric_limits<float>::infinity();
  Metrics metrics(dir, "off");
  metrics.record({{"kind", "train"}, {"step", 5}, {"epoch", 1}, {"loss", 0.5}, {"loss_spike", inf},
                  {"skipped", 0}, {"overflow", "non-finite loss terms: spike"}, {"scale", 65536.0}, {"flag", true}});
  metrics.record({{"kind", "eval"}, {"step", 5}, {"accuracy", 0.75}});
  metrics.record({{"step", 7}, {"loss", 0.25}});  // no kind: the bare field name
  metrics.record({{"kind", "train"}, {"loss", 0.125}});  // no step: step 0
  // On disk before the Metrics closes: each row's scalars are flushed with it.
  const auto files = test::events_files(dir / "tensorboard");
  ASSERT_EQ(files.size(), 1u);
  const std::vector<Scalar> expected = {
      {"train/epoch", 5, 1.f}, {"train/loss", 5, 0.5f}, {"train/loss_spike", 5, inf}, {"train/scale", 5, 65536.f},
      {"train/skipped", 5, 0.f}, {"eval/accuracy", 5, 0.75f}, {"loss", 7, 0.25f}, {"train/loss", 0, 0.125f}};
  EXPECT_EQ(scalars_of(test::read_events(files[0])), expected);
}
