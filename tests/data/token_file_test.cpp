#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "core/error.h"
#include "data/text_corpus.h"
#include "data/token_file.h"
#include "tests/data/helpers.h"

namespace retort::data {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using namespace retort::data::testing;

std::vector<int32_t> random_tokens(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
  std::vector<int32_t> tokens(n);
  for (auto& t : tokens) t = pick(gen);
  return tokens;
}

template <class T>
void append(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

// Token files laid out by hand from the formats' descriptions, not by write_token_file.
std::string nanogpt_bytes(const std::vector<int32_t>& tokens) {
  std::string out;
  for (int32_t t : tokens) append<uint16_t>(out, static_cast<uint16_t>(t));
  return out;
}

std::string llmc_bytes(const std::vector<int32_t>& tokens, int32_t magic = 20240520, int32_t version = 1,
                       int64_t declared = -1) {
  std::vector<int32_t> header(256, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = static_cast<int32_t>(declared >= 0 ? declared : static_cast<int64_t>(tokens.size()));
  std::string out(reinterpret_cast<const char*>(header.data()), header.size() * sizeof(int32_t));
  for (int32_t t : tokens) {
    if (magic == 20240801) {
      append<uint32_t>(out, static_cast<uint32_t>(t));
    } else {
      append<uint16_t>(out, static_cast<uint16_t>(t));
    }
  }
  return out;
}

void expect_tokens(const TokenFile& file, const std::vector<int32_t>& tokens) {
  ASSERT_EQ(file.size(), static_cast<int64_t>(tokens.size()));
  const auto all = file.slice(0, file.size());
  EXPECT_EQ(all.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(all, torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.end()))));
  const auto window = file.slice(5, 3);
  EXPECT_EQ(window.sizes(), torch::IntArrayRef({3}));
  EXPECT_EQ(window[2].item<int64_t>(), tokens[7]);
  EXPECT_EQ(file[file.size() - 1], tokens.back());
}

TEST(TokenFile, RetortRoundTripUint16) {
  TempDir dir;
  const auto tokens = random_tokens(1000, 50257, 1);
  write_token_file(dir / "t.tokens", tokens, {TokenFormat::kRetort, 50257, "gpt2", 4321});
  const std::string bytes = read_bytes(dir / "t.tokens");
  ASSERT_EQ(bytes.size(), 64 + 2 * tokens.size());
  EXPECT_EQ(bytes.substr(0, 8), "RETORTTK");
  EXPECT_EQ(bytes.substr(64), nanogpt_bytes(tokens));
  const TokenFile file(dir / "t.tokens", 50304);
  EXPECT_EQ(file.format(), TokenFormat::kRetort);
  EXPECT_EQ(file.vocab_size(), 50257);
  EXPECT_EQ(file.tokenizer(), "gpt2");
  EXPECT_EQ(file.text_bytes(), 4321);
  EXPECT_EQ(file.token_bytes(), 2);
  expect_tokens(file, tokens);
}

TEST(TokenFile, RetortUint32AboveSixtyFiveThousandIds) {
  TempDir dir;
  const auto tokens = random_tokens(300, 128256, 2);
  write_token_file(dir / "t.tokens", tokens, {TokenFormat::kRetort, 128256, "llama3", 0});
  const TokenFile file(dir / "t.tokens");
  EXPECT_EQ(file.token_bytes(), 4);
  EXPECT_EQ(fs::file_size(dir / "t.tokens"), 64 + 4 * tokens.size());
  expect_tokens(file, tokens);
}

TEST(TokenFile, ReadsLlmcFiles) {
  TempDir dir;
  const auto tokens = random_tokens(500, 50257, 3);
  write_bytes(dir / "gpt2.bin", llmc_bytes(tokens));
  const TokenFile file(dir / "gpt2.bin", 50257);
  EXPECT_EQ(file.format(), TokenFormat::kLlmc);
  EXPECT_EQ(file.vocab_size(), std::nullopt);
  EXPECT_EQ(file.tokenizer(), "");
  expect_tokens(file, tokens);
  write_token_file(dir / "written.bin", tokens, {TokenFormat::kLlmc, 50257, "", 0});
  EXPECT_EQ(read_bytes(dir / "written.bin"), read_bytes(dir / "gpt2.bin"));

  const auto wide = random_tokens(200, 128256, 4);
  write_bytes(dir / "llama3.bin", llmc_bytes(wide, 20240801, 7));
  const TokenFile llama3(dir / "llama3.bin");
  EXPECT_EQ(llama3.token_bytes(), 4);
  expect_tokens(llama3, wide);
}

TEST(TokenFile, ReadsNanoGptBinFiles) {
  TempDir dir;
  const auto tokens = random_tokens(777, 50257, 5);
  write_bytes(dir / "train.bin", nanogpt_bytes(tokens));
  const TokenFile file(dir / "train.bin", 50257);
  EXPECT_EQ(file.format(), TokenFormat::kNanoGpt);
  EXPECT_EQ(file.vocab_size(), std::nullopt);
  expect_tokens(file, tokens);
  write_token_file(dir / "written.bin", tokens, {TokenFormat::kNanoGpt, 50257, "", 0});
  EXPECT_EQ(read_bytes(dir / "written.bin"), read_bytes(dir / "train.bin"));
}

TEST(TokenFile, TokenOutsideTheVocabNamesTheFileAndOffset) {
  TempDir dir;
  auto tokens = random_tokens(200'000, 50257, 6);  // several of the check's 65536-token blocks
  tokens[150'001] = 50300;
  tokens[180'000] = 60000;
  const fs::path path = dir / "train.bin";
  write_bytes(path, nanogpt_bytes(tokens));
  EXPECT_EQ(TokenFile(path).size(), 200'000);  // no vocab size given: nothing to check against
  EXPECT_THAT(error_of<DataError>([&] { TokenFile(path, 50257); }),
              AllOf(HasSubstr(path.string()), HasSubstr("token 50300 at token offset 150001"),
                    HasSubstr("byte offset 300002"), HasSubstr("vocabulary of 50257")));
  write_bytes(dir / "llmc.bin", llmc_bytes({1, 2, 3, 256}));
  EXPECT_THAT(error_of<DataError>([&] { TokenFile(dir / "llmc.bin", 256); }),
              AllOf(HasSubstr("llmc.bin"), HasSubstr("token offset 3"), HasSubstr("byte offset 1030")));
}

TEST(TokenFile, RetortFileOfALargerVocabThanTheModel) {
  TempDir dir;
  write_token_file(dir / "t.tokens", {1, 2, 3}, {TokenFormat::kRetort, 50257, "gpt2", 0});
  EXPECT_THAT(error_of<DataError>([&] { TokenFile(dir / "t.tokens", 256); }),
              AllOf(HasSubstr("t.tokens"), HasSubstr("gpt2 (50257 ids)"), HasSubstr("vocab size 256")));
}

TEST(TokenFile, TruncatedOrInconsistentFilesAreNamed) {
  TempDir dir;
  const auto tokens = random_tokens(100, 1000, 7);
  const auto error = [&](const std::string& name, const std::string& bytes) {
    write_bytes(dir / name, bytes);
    const std::string what = error_of<DataError>([&] { TokenFile(dir / name, 1000); });
    EXPECT_THAT(what, HasSubstr((dir / name).string()));
    return what;
  };
  write_token_file(dir / "whole.tokens", tokens, {TokenFormat::kRetort, 1000, "bytes", 0});
  const std::string retort = read_bytes(dir / "whole.tokens");
  EXPECT_THAT(error("cut.tokens", retort.substr(0, retort.size() - 2)),
              HasSubstr("truncated: the retort header declares 100 tokens of 2 bytes, but 198 bytes follow it"));
  EXPECT_THAT(error("long.tokens", retort + "x"), HasSubstr("trailing bytes"));
  EXPECT_THAT(error("header.tokens", retort.substr(0, 40)),
              HasSubstr("truncated: 40 bytes, less than the retort header's 64"));
  EXPECT_THAT(error("cut.bin", llmc_bytes(tokens, 20240520, 1, 101)), HasSubstr("truncated"));
  EXPECT_THAT(error("more.bin", llmc_bytes(tokens, 20240520, 1, 99)), HasSubstr("trailing bytes"));
  EXPECT_THAT(error("version.bin", llmc_bytes(tokens, 20240520, 2)), HasSubstr("version 2; expected 1"));
  EXPECT_THAT(error("header.bin", llmc_bytes(tokens).substr(0, 500)), HasSubstr("less than the llm.c header's 1024"));
  EXPECT_THAT(error("odd.bin", nanogpt_bytes(tokens) + "x"), HasSubstr("201 bytes, an odd number"));
  EXPECT_THAT(error("empty.bin", ""), HasSubstr("empty"));
  EXPECT_THAT(error_of<DataError>([&] { TokenFile(dir / "missing.bin"); }), HasSubstr("missing.bin': not found"));
}

TEST(TokenFile, WindowsOutsideTheFileAreErrors) {
  TempDir dir;
  write_bytes(dir / "t.bin", nanogpt_bytes({1, 2, 3, 4}));
  const TokenFile file(dir / "t.bin");
  EXPECT_EQ(file.slice(4, 0).numel(), 0);
  EXPECT_THAT(error_of<DataError>([&] { file.slice(2, 3); }), HasSubstr("tokens [2, 5) are outside the file's 4"));
  EXPECT_THAT(error_of<DataError>([&] { file.slice(-1, 1); }), HasSubstr("outside"));
  EXPECT_THAT(error_of<DataError>([&] { file[4]; }), HasSubstr("token offset 4"));
}

TEST(TokenFile, MovesKeepTheMapping) {
  TempDir dir;
  write_bytes(dir / "t.bin", nanogpt_bytes({7, 8, 9}));
  TokenFile a(dir / "t.bin");
  TokenFile b(std::move(a));
  EXPECT_EQ(b[2], 9);
  TokenFile c(dir / "t.bin");
  c = std::move(b);
  EXPECT_EQ(c.size(), 3);
  EXPECT_EQ(c[0], 7);
}

TEST(TokenFile, WriteRejectsTokensTheFormatCannotHold) {
  TempDir dir;
  const auto write = [&](const std::vector<int32_t>& tokens, const TokenFileInfo& info) {
    write_token_file(dir / "t", tokens, info);
  };
  EXPECT_THAT(error_of<DataError>([&] { write({1, 2, 3, 10}, {TokenFormat::kRetort, 10, "x", 0}); }),
              AllOf(HasSubstr("token 10 at token offset 3"), HasSubstr("0..9")));
  EXPECT_THAT(error_of<DataError>([&] { write({70000}, {TokenFormat::kNanoGpt, 100000, "", 0}); }),
              HasSubstr("0..65535"));
  EXPECT_THAT(error_of<ConfigError>([&] { write({1}, {TokenFormat::kRetort, 10, std::string(24, 'n'), 0}); }),
              HasSubstr("longer than 23 bytes"));
  EXPECT_FALSE(fs::exists(dir / "t"));
}

// ------------------------------------------------------------------------------------
// tokenize_corpus: what `retort tokenize` does
// ------------------------------------------------------------------------------------

TEST(TokenizeCorpus, WritesTrainAndValidationWithTheBytesTokenizer) {
  TempDir dir;
  fs::create_directory(dir / "corpus");
  write_bytes(dir / "corpus" / "a", std::string(60, 'a'));
  write_bytes(dir / "corpus" / "b", std::string(40, 'b'));
  const auto tok = make_tokenizer({});
  const auto made = tokenize_corpus(*tok, dir / "corpus", dir / "out" / "bytes", 0.25);
  EXPECT_EQ(made.train_path, dir / "out" / "bytes" / "train.tokens");
  EXPECT_EQ(made.validation_path, dir / "out" / "bytes" / "val.tokens");
  EXPECT_EQ(made.train_tokens, 75);
  EXPECT_EQ(made.validation_tokens, 25);
  const TokenFile train(made.train_path, 256), val(made.validation_path, 256);
  EXPECT_EQ(train.tokenizer(), "bytes");
  EXPECT_EQ(train.vocab_size(), 256);
  EXPECT_EQ(train.text_bytes(), 75);
  EXPECT_EQ(train[59], 'a');
  EXPECT_EQ(train[60], 'b');
  EXPECT_EQ(val.size(), 25);
  EXPECT_EQ(val[0], 'b');
}

TEST(TokenizeCorpus, EmptyCorpusNamesThePathAndWritesNothing) {
  TempDir dir;
  fs::create_directory(dir / "corpus");
  const auto tok = make_tokenizer({});
  EXPECT_THAT(error_of<DataError>([&] { tokenize_corpus(*tok, dir / "corpus", dir / "out"); }),
              HasSubstr((dir / "corpus").string() + "' is empty"));
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(TokenizeCorpus, FortunesWithGpt2) {
  const Tokenizer* gpt2 = gpt2_tokenizer();
  const fs::path fortunes = fortunes_dir();
  if (gpt2 == nullptr || fortunes.empty()) return;
  TempDir dir;
  const auto made = tokenize_corpus(*gpt2, fortunes, dir.path());
  const auto corpus = read_text_corpus(fortunes);
  EXPECT_EQ(made.train_bytes + made.validation_bytes, static_cast<int64_t>(corpus.text.size()));
  const TokenFile val(made.validation_path, 50257);
  EXPECT_EQ(val.size(), made.validation_tokens);
  EXPECT_EQ(val.tokenizer(), "gpt2");
  EXPECT_EQ(val.text_bytes(), made.validation_bytes);
  const auto ids = val.slice(0, val.size());
  EXPECT_EQ(gpt2->decode(std::vector<int32_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel())),
            corpus.validation());
  EXPECT_GT(made.train_tokens, 500'000);
}

}  // namespace
}  // namespace retort::data
