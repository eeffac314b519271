#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "core/error.h"
#include "data/text_corpus.h"
#include "data/tokenizer.h"
#include "data/unicode.h"
#include "tests/data/helpers.h"

namespace retort::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace retort::data::testing;

// Greek, Cyrillic, CJK, Arabic, Devanagari (with its combining signs), Arabic-Indic and
// full-width digits, a combining accent, emoji (astral), NBSP and ideographic space, tabs,
// blank lines, contractions and `<|endoftext|>`, which stays plain text. Unicode <= 14.0 and
// no character on which the regex engines' \s differ (U+0085, U+FEFF, U+001C..U+001F).
const std::string kMixedScripts =
    "Hello world! It's 3.14 o'clock; we'll see.\n\n"
    "Ελληνικά: καλημέρα κόσμε. Русский текст, да?\tНет!\n"
    "中文字符和日本語のテキスト。한국어 문장입니다.\n"
    "العربية ١٢٣ और हिन्दी में लिखा गया ४५६ — ０１２ ½ Ⅻ\n"
    "cafe\xcc\x81 na\xc3\xafve  \xc2\xa0spaces\xe3\x80\x80" "and   \n  emoji 🙂🚀 (🇫🇷) <|endoftext|>  \n";

TEST(BytesTokenizer, RoundTripsEveryByte) {
  auto tok = make_tokenizer({});
  EXPECT_EQ(tok->name(), "bytes");
  EXPECT_EQ(tok->vocab_size(), 256);
  std::string all(256, '\0');
  for (int b = 0; b < 256; ++b) all[static_cast<size_t>(b)] = static_cast<char>(b);
  const auto ids = tok->encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[static_cast<size_t>(b)], b);
  EXPECT_EQ(tok->decode(ids), all);
}

TEST(BytesTokenizer, DecodeNamesTheIdOutOfRange) {
  auto tok = make_tokenizer({});
  EXPECT_THAT(error_of<DataError>([&] { tok->decode({65, 256}); }), HasSubstr("token 256 at position 1"));
}

TEST(Unicode, ClassesAndUtf8) {
  EXPECT_EQ(char_class(U'a'), CharClass::kLetter);
  EXPECT_EQ(char_class(U'\u4e2d'), CharClass::kLetter);    // 中
  EXPECT_EQ(char_class(U'\u0661'), CharClass::kNumber);    // Arabic-Indic 1
  EXPECT_EQ(char_class(U'\u00bd'), CharClass::kNumber);    // ½ (No)
  EXPECT_EQ(char_class(U'\u0301'), CharClass::kOther);     // combining acute (Mn)
  EXPECT_EQ(char_class(U'\u3000'), CharClass::kSpace);
  EXPECT_EQ(char_class(U'\u0085'), CharClass::kSpace);
  EXPECT_EQ(char_class(U'\u001f'), CharClass::kOther);
  EXPECT_EQ(char_class(U'\U0001F642'), CharClass::kOther);  // 🙂
  EXPECT_EQ(char_class(0x10FFFF), CharClass::kOther);
  EXPECT_EQ(invalid_utf8_offset("plain ascii, long enough for the 8-byte path"), std::string_view::npos);
  EXPECT_EQ(invalid_utf8_offset(kMixedScripts), std::string_view::npos);
  EXPECT_EQ(invalid_utf8_offset("abcdefghij\x80"), 10u);        // stray continuation byte
  EXPECT_EQ(invalid_utf8_offset("ab\xc0\xaf"), 2u);             // overlong '/'
  EXPECT_EQ(invalid_utf8_offset("ab\xed\xa0\x80"), 2u);         // surrogate U+D800
  EXPECT_EQ(invalid_utf8_offset("ab\xf4\x90\x80\x80"), 2u);     // above U+10FFFF
  EXPECT_EQ(invalid_utf8_offset("abc\xe2\x82"), 3u);            // truncated
}

TEST(Gpt2Words, FollowGpt2sPattern) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(gpt2_words("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(gpt2_words("I'm sure they'll've"), (V{"I", "'m", " sure", " they", "'ll", "'ve"}));
  EXPECT_EQ(gpt2_words("?'s x's 'S"), (V{"?'", "s", " x", "'s", " '", "S"}));
  EXPECT_EQ(gpt2_words("a  b"), (V{"a", " ", " b"}));
  EXPECT_EQ(gpt2_words("a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(gpt2_words("a\tb \n"), (V{"a", "\t", "b", " \n"}));
  EXPECT_EQ(gpt2_words("3.14 $100 ..."), (V{"3", ".", "14", " $", "100", " ..."}));
  EXPECT_EQ(gpt2_words("x\xc2\xa0y"), (V{"x", "\xc2\xa0", "y"}));                  // NBSP is \s, not ' '
  EXPECT_EQ(gpt2_words("cafe\xcc\x81!"), (V{"cafe", "\xcc\x81!"}));                 // a combining mark is other
  EXPECT_EQ(gpt2_words(" \xd9\xa1\xd9\xa2x"), (V{" \xd9\xa1\xd9\xa2", "x"}));      // Arabic-Indic digits
  EXPECT_EQ(gpt2_words(""), V{});
}

TEST(Gpt2Words, IllFormedUtf8NamesTheOffset) {
  EXPECT_THAT(error_of<DataError>([] { gpt2_words("ab\xff" "cd"); }), HasSubstr("byte offset 2"));
}

TEST(Gpt2Tokenizer, KnownIds) {
  const Tokenizer* gpt2 = gpt2_tokenizer();
  if (gpt2 == nullptr) return;
  EXPECT_EQ(gpt2->name(), "gpt2");
  EXPECT_EQ(gpt2->vocab_size(), 50257);
  EXPECT_THAT(gpt2->encode("Hello world"), ElementsAre(15496, 995));
  EXPECT_THAT(gpt2->encode("<|endoftext|>"), ElementsAre(27, 91, 437, 1659, 5239, 91, 29));
  EXPECT_EQ(gpt2->decode({50256}), "<|endoftext|>");
  EXPECT_TRUE(gpt2->encode("").empty());
}

TEST(Gpt2Tokenizer, RoundTripsMixedScripts) {
  const Tokenizer* gpt2 = gpt2_tokenizer();
  if (gpt2 == nullptr) return;
  const auto ids = gpt2->encode(kMixedScripts);
  EXPECT_GT(ids.size(), 100u);
  EXPECT_EQ(gpt2->decode(ids), kMixedScripts);
  // A window may split a character: decode gives its bytes as they are.
  const std::string pieces = gpt2->decode({ids.begin() + 20, ids.end()});
  EXPECT_EQ(pieces, kMixedScripts.substr(kMixedScripts.size() - pieces.size()));
}

TEST(Gpt2Tokenizer, EncodeAndDecodeErrorsNameTheOffset) {
  const Tokenizer* gpt2 = gpt2_tokenizer();
  if (gpt2 == nullptr) return;
  EXPECT_THAT(error_of<DataError>([&] { gpt2->encode("fine \xe2\x82"); }), HasSubstr("byte offset 5"));
  EXPECT_THAT(error_of<DataError>([&] { gpt2->decode({0, 50257}); }), HasSubstr("token 50257 at position 1"));
  EXPECT_THAT(error_of<DataError>([&] { gpt2->decode({-1}); }), HasSubstr("token -1 at position 0"));
}

// ------------------------------------------------------------------------------------
// Missing or corrupt GPT-2 files
// ------------------------------------------------------------------------------------

std::string gpt2_error(const fs::path& dir) {
  return error_of<DataError>([&] { make_tokenizer({"gpt2", dir.string()}); });
}

TEST(Gpt2Files, MissingFilesAreNamed) {
  TempDir dir;
  EXPECT_THAT(gpt2_error(dir.path()), HasSubstr((dir / "encoder.json").string() + "' not found"));
  if (gpt2_tokenizer() == nullptr) return;
  fs::copy_file(gpt2_dir() / "encoder.json", dir / "encoder.json");
  EXPECT_THAT(gpt2_error(dir.path()), HasSubstr((dir / "vocab.bpe").string() + "' not found"));
}

TEST(Gpt2Files, CorruptEncoderJsonIsNamed) {
  TempDir dir;
  write_bytes(dir / "vocab.bpe", "#version: 0.2\n");
  const std::string name = (dir / "encoder.json").string();
  write_bytes(dir / "encoder.json", "{\"a\": 0,");
  EXPECT_THAT(gpt2_error(dir.path()), AllOf(HasSubstr(name), HasSubstr("not valid JSON")));
  write_bytes(dir / "encoder.json", "[1, 2]");
  EXPECT_THAT(gpt2_error(dir.path()), AllOf(HasSubstr(name), HasSubstr("JSON object")));
  write_bytes(dir / "encoder.json", "{\"a\": 0, \"b\": 5}");
  EXPECT_THAT(gpt2_error(dir.path()), AllOf(HasSubstr(name), HasSubstr("\"b\" has id 5; expected each of 0..1 once")));
  write_bytes(dir / "encoder.json", "{\"a\": 0, \"b\": 1}");
  EXPECT_THAT(gpt2_error(dir.path()), AllOf(HasSubstr(name), HasSubstr("no token for the byte 0")));
  write_bytes(dir / "encoder.json", "{\"a\\u0000\": 0}");
  EXPECT_THAT(gpt2_error(dir.path()), AllOf(HasSubstr(name), HasSubstr("not in GPT-2's byte alphabet")));
}

TEST(Gpt2Files, CorruptMergeLineIsNamed) {
  if (gpt2_tokenizer() == nullptr) return;
  TempDir dir;
  fs::copy_file(gpt2_dir() / "encoder.json", dir / "encoder.json");
  const std::string name = (dir / "vocab.bpe").string();
  write_bytes(dir / "vocab.bpe", "#version: 0.2\n\xc4\xa0 t\nnot-a-merge\n");
  EXPECT_THAT(gpt2_error(dir.path()), AllOf(HasSubstr(name), HasSubstr("line 3 \"not-a-merge\"")));
  write_bytes(dir / "vocab.bpe", "#version: 0.2\nq zx\n");
  EXPECT_THAT(gpt2_error(dir.path()), AllOf(HasSubstr(name), HasSubstr("line 2"), HasSubstr("encoder.json lacks")));
  write_bytes(dir / "vocab.bpe", "#version: 0.2\n");
  EXPECT_THAT(gpt2_error(dir.path()), AllOf(HasSubstr(name), HasSubstr("no merges")));
  write_bytes(dir / "vocab.bpe", "#version: 0.2\n\xff\xfe\n");
  EXPECT_THAT(gpt2_error(dir.path()), AllOf(HasSubstr(name), HasSubstr("byte offset 14")));
}

TEST(TokenizerOptions, ValidateNamesTheKey) {
  EXPECT_THAT(error_of<ConfigError>([] { make_tokenizer({"gpt3", ""}); }), HasSubstr("tokenizer.name"));
  EXPECT_THAT(error_of<ConfigError>([] { make_tokenizer({"gpt2", ""}); }), HasSubstr("tokenizer.dir"));
  const auto keys = config::describe<TokenizerOptions>("tokenizer");
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].path, "tokenizer.name");
  EXPECT_EQ(keys[0].default_value, "bytes");
  EXPECT_EQ(keys[1].path, "tokenizer.dir");
}

// ------------------------------------------------------------------------------------
// Token for token against gpt-3-encoder (npm), openai/gpt-2's encoder.py in JavaScript
// ------------------------------------------------------------------------------------

// gpt-3-encoder's ids for `text`, from tests/data/gpt2_reference.js; empty after failing
// the test when node or the package is missing.
std::vector<int32_t> reference_ids(const std::string& text) {
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    ADD_FAILURE() << "node is not installed: " << kInstallHint;
    return {};
  }
  TempDir dir;
  write_bytes(dir / "text", text);
  const fs::path script = retort::test::source_dir() / "tests" / "data" / "gpt2_reference.js";
  const std::string command = "node '" + script.string() + "' '" + gpt2_dir().string() + "' '" +
                              (dir / "text").string() + "' '" + (dir / "ids").string() + "' 2>&1";
  if (std::system(command.c_str()) != 0) {
    ADD_FAILURE() << "the reference failed: " << command;
    return {};
  }
  const std::string bytes = read_bytes(dir / "ids");
  std::vector<int32_t> ids(bytes.size() / sizeof(int32_t));
  std::memcpy(ids.data(), bytes.data(), ids.size() * sizeof(int32_t));
  return ids;
}

std::string escaped(const std::string& s) {
  std::ostringstream out;
  for (unsigned char c : s) {
    if (c == '\n') out << "\\n";
    else if (c == '\t') out << "\\t";
    else if (c < 0x20 || c == 0x7f) out << "\\x" << std::hex << static_cast<int>(c) << std::dec;
    else out << c;
  }
  return out.str();
}

std::string ids_text(const std::vector<int32_t>& ids, size_t from, size_t count) {
  std::ostringstream out;
  for (size_t i = from; i < std::min(ids.size(), from + count); ++i) out << ids[i] << ' ';
  return out.str();
}

// The first token where retort and the reference differ, with its byte offset and the text
// around it; "" when they agree.
std::string first_mismatch(const Tokenizer& tok, const std::string& text, const std::vector<int32_t>& ours,
                           const std::vector<int32_t>& reference) {
  const auto at = std::mismatch(ours.begin(), ours.end(), reference.begin(), reference.end());
  if (at.first == ours.end() && at.second == reference.end()) return "";
  const auto index = static_cast<size_t>(at.first - ours.begin());
  const size_t offset = tok.decode({ours.begin(), at.first}).size();
  const size_t from = offset > 40 ? offset - 40 : 0;
  return "token " + std::to_string(index) + " (of " + std::to_string(ours.size()) + " ours, " +
         std::to_string(reference.size()) + " reference) at byte offset " + std::to_string(offset) + "\n  text: \"" +
         escaped(text.substr(from, offset - from)) + "[HERE]" + escaped(text.substr(offset, 40)) +
         "\"\n  ours:      " + ids_text(ours, index, 8) + "\n  reference: " + ids_text(reference, index, 8);
}

TEST(Gpt2Reference, MixedScriptsTokenForToken) {
  const Tokenizer* gpt2 = gpt2_tokenizer();
  if (gpt2 == nullptr) return;
  const auto reference = reference_ids(kMixedScripts);
  if (reference.empty()) return;
  EXPECT_EQ(first_mismatch(*gpt2, kMixedScripts, gpt2->encode(kMixedScripts), reference), "");
}

// The whole fortunes corpus (2.5 MB, about 730k tokens).
TEST(Gpt2Reference, WholeFortunesCorpusTokenForToken) {
  const Tokenizer* gpt2 = gpt2_tokenizer();
  const fs::path fortunes = fortunes_dir();
  if (gpt2 == nullptr || fortunes.empty()) return;
  const std::string text = read_text_corpus(fortunes, 0.0).text;
  const auto ours = gpt2->encode(text);
  const auto reference = reference_ids(text);
  if (reference.empty()) return;
  EXPECT_EQ(first_mismatch(*gpt2, text, ours, reference), "");
  EXPECT_EQ(gpt2->decode(ours), text);
}

}  // namespace
}  // namespace retort::data
