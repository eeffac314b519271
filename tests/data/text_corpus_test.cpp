#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "data/text_corpus.h"
#include "tests/data/helpers.h"

namespace retort::data {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace retort::data::testing;

// A folder laid out as Debian's fortunes is (text, strfile index, .u8 link), plus what else
// a folder may hold.
TEST(TextCorpus, FolderInNameOrderSkippingIndexesLinksHiddenFilesAndSubfolders) {
  TempDir dir;
  write_bytes(dir / "b", "bee\n%\n");
  write_bytes(dir / "a", "ay\n%\n");
  write_bytes(dir / "Z", "zed\n");  // upper case sorts first: byte order
  write_bytes(dir / "a.dat", std::string("\0\0\0\2\xff", 5));
  fs::create_symlink("a", dir / "a.u8");
  write_bytes(dir / ".hidden", "no\n");
  fs::create_directory(dir / "off");
  write_bytes(dir / "off" / "c", "sea\n");
  const auto corpus = read_text_corpus(dir.path());
  EXPECT_THAT(corpus.files, ElementsAre(dir / "Z", dir / "a", dir / "b"));
  EXPECT_EQ(corpus.text, "zed\nay\n%\nbee\n%\n");
  EXPECT_EQ(corpus.source, dir.path());
}

TEST(TextCorpus, OneFile) {
  TempDir dir;
  write_bytes(dir / "t.txt", "0123456789");
  const auto corpus = read_text_corpus(dir / "t.txt");
  EXPECT_THAT(corpus.files, ElementsAre(dir / "t.txt"));
  EXPECT_EQ(corpus.train(), "012345678");
  EXPECT_EQ(corpus.validation(), "9");
}

TEST(TextCorpus, ValidationIsTheLastFractionOfTheBytes) {
  const std::string text(1000, 'x');
  EXPECT_EQ(validation_offset(text, 0.1), 900u);
  EXPECT_EQ(validation_offset(text, 0.25), 750u);
  EXPECT_EQ(validation_offset(text, 0.0), 1000u);
  EXPECT_EQ(validation_offset(std::string(999, 'x'), 0.1), 900u);  // floor(99.9) bytes
  TempDir dir;
  write_bytes(dir / "t", text);
  EXPECT_EQ(read_text_corpus(dir / "t", 0.2).validation().size(), 200u);
  EXPECT_EQ(read_text_corpus(dir / "t", 0.0).validation().size(), 0u);
}

TEST(TextCorpus, TheCutMovesBackToACharacterBoundary) {
  EXPECT_EQ(validation_offset("abcdefgh\xc3\xa9", 0.1), 8u);   // é: 2 bytes, the cut at 9 is inside
  EXPECT_EQ(validation_offset("abcdefg\xe2\x82\xac", 0.1), 7u);  // €: 3 bytes
  EXPECT_EQ(validation_offset("abcdefghi\xc3\xa9", 0.1), 9u);   // 11 bytes: 1 for validation, inside é
}

TEST(TextCorpus, ErrorsNameThePath) {
  TempDir dir;
  EXPECT_THAT(error_of<DataError>([&] { read_text_corpus(dir / "nope"); }),
              AllOf(HasSubstr((dir / "nope").string()), HasSubstr("not found")));
  fs::create_directory(dir / "empty");
  write_bytes(dir / "empty" / "x.dat", "index");
  EXPECT_THAT(error_of<DataError>([&] { read_text_corpus(dir / "empty"); }),
              AllOf(HasSubstr((dir / "empty").string() + "' is empty"), HasSubstr("no text files")));
  write_bytes(dir / "empty" / "blank", "");
  EXPECT_THAT(error_of<DataError>([&] { read_text_corpus(dir / "empty"); }),
              HasSubstr((dir / "empty").string() + "' is empty"));
  write_bytes(dir / "tiny", "a");
  EXPECT_THAT(error_of<DataError>([&] { read_text_corpus(dir / "tiny", 0.5); }),
              AllOf(HasSubstr((dir / "tiny").string()), HasSubstr("too few")));
  EXPECT_EQ(read_text_corpus(dir / "tiny", 0.0).train(), "a");
}

TEST(TextCorpus, NotUtf8NamesTheFileAndTheOffset) {
  TempDir dir;
  write_bytes(dir / "a", "fine\n");
  write_bytes(dir / "b", "caf\xe9\n");  // Latin-1
  EXPECT_THAT(error_of<DataError>([&] { read_text_corpus(dir.path()); }),
              AllOf(HasSubstr((dir / "b").string()), HasSubstr("byte offset 3")));
}

TEST(TextCorpus, FractionOutsideZeroToOneIsAConfigError) {
  TempDir dir;
  write_bytes(dir / "t", "text");
  for (double bad : {-0.1, 1.0, std::nan("")})
    EXPECT_THAT(error_of<ConfigError>([&] { read_text_corpus(dir / "t", bad); }), HasSubstr("[0, 1)"));
}

TEST(TextCorpus, Fortunes) {
  const fs::path dir = fortunes_dir();
  if (dir.empty()) return;
  const auto corpus = read_text_corpus(dir);
  ASSERT_GE(corpus.files.size(), 40u);
  size_t bytes = 0;
  for (size_t i = 0; i < corpus.files.size(); ++i) {
    const auto& file = corpus.files[i];
    EXPECT_NE(file.extension(), ".dat");
    EXPECT_NE(file.extension(), ".u8");
    EXPECT_FALSE(fs::is_symlink(file)) << file;
    if (i > 0) {
      EXPECT_LT(corpus.files[i - 1].filename().string(), file.filename().string());
    }
    bytes += fs::file_size(file);
  }
  EXPECT_EQ(corpus.files.front().filename(), "art");
  EXPECT_EQ(corpus.text.size(), bytes);
  EXPECT_GT(bytes, 2'000'000u);
  EXPECT_GE(corpus.validation().size(), bytes / 10);
  EXPECT_LT(corpus.validation().size(), bytes / 10 + 4);  // at most back to a character's start
}

}  // namespace
}  // namespace retort::data
