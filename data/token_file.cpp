#include "data/token_file.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "core/fs.h"
#include "data/text_corpus.h"

namespace retort::data {

namespace fs = std::filesystem;

namespace {

constexpr char kRetortMagic[8] = {'R', 'E', 'T', 'O', 'R', 'T', 'T', 'K'};
constexpr uint32_t kRetortVersion = 1;
constexpr size_t kRetortHeader = 64;
constexpr size_t kNameBytes = 24;  // the header's last field
constexpr int32_t kLlmcGpt2Magic = 20240520, kLlmcLlama3Magic = 20240801;
constexpr size_t kLlmcHeader = 256 * sizeof(int32_t);

template <class T>
T load(const unsigned char* at) {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}

template <class T>
void store(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw DataError("token file '" + path.string() + "': " + what);
}

// The first token >= limit, -1 when none. A branch-free max per block (the compiler
// vectorises it) finds the block; only that block is searched token by token.
template <class T>
int64_t first_at_or_above(const T* tokens, int64_t count, int64_t limit) {
  constexpr int64_t kBlock = 1 << 16;
  for (int64_t begin = 0; begin < count; begin += kBlock) {
    const int64_t end = std::min(count, begin + kBlock);
    T max = 0;
    for (int64_t i = begin; i < end; ++i) max = std::max(max, tokens[i]);
    if (static_cast<int64_t>(max) < limit) continue;
    for (int64_t i = begin; i < end; ++i)
      if (static_cast<int64_t>(tokens[i]) >= limit) return i;
  }
  return -1;
}

std::string retort_header(int64_t count, int token_bytes, const TokenFileInfo& info) {
  std::string out(kRetortMagic, sizeof(kRetortMagic));
  store<uint32_t>(out, kRetortVersion);
  store<uint32_t>(out, static_cast<uint32_t>(token_bytes));
  store<uint64_t>(out, static_cast<uint64_t>(info.vocab_size));
  store<uint64_t>(out, static_cast<uint64_t>(count));
  store<uint64_t>(out, static_cast<uint64_t>(info.text_bytes));
  out += info.tokenizer;
  out.resize(kRetortHeader, '\0');
  return out;
}

std::string llmc_header(int64_t count) {
  std::string out;
  store<int32_t>(out, kLlmcGpt2Magic);
  store<int32_t>(out, 1);
  store<int32_t>(out, static_cast<int32_t>(count));
  out.resize(kLlmcHeader, '\0');
  return out;
}

void check_writable(const fs::path& path, const std::vector<int32_t>& tokens, const TokenFileInfo& info,
                    int token_bytes) {
  if (info.vocab_size < 1) throw ConfigError("token file '" + path.string() + "': vocab size must be >= 1");
  if (info.tokenizer.size() >= kNameBytes) {
    throw ConfigError("token file '" + path.string() + "': tokenizer name '" + info.tokenizer + "' is longer than " +
                      std::to_string(kNameBytes - 1) + " bytes");
  }
  const int64_t limit = token_bytes == 2 ? std::min<int64_t>(info.vocab_size, 65536) : info.vocab_size;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= limit) {
      fail(path, "cannot write token " + std::to_string(tokens[i]) + " at token offset " + std::to_string(i) +
                     ": the " + format_name(info.format) + " file holds tokens 0.." + std::to_string(limit - 1));
    }
  }
  if (info.format == TokenFormat::kLlmc && tokens.size() > static_cast<size_t>(INT32_MAX))
    fail(path, "llm.c's header counts at most " + std::to_string(INT32_MAX) + " tokens");
}

}  // namespace

std::string format_name(TokenFormat format) {
  switch (format) {
    case TokenFormat::kRetort: return "retort";
    case TokenFormat::kLlmc: return "llm.c";
    case TokenFormat::kNanoGpt: return "nanoGPT";
  }
  return "?";
}

void write_token_file(const fs::path& path, const std::vector<int32_t>& tokens, const TokenFileInfo& info) {
  const bool wide = info.format == TokenFormat::kRetort && info.vocab_size > 65536;
  const int token_bytes = wide ? 4 : 2;
  check_writable(path, tokens, info, token_bytes);
  const auto count = static_cast<int64_t>(tokens.size());
  std::string out = info.format == TokenFormat::kRetort ? retort_header(count, token_bytes, info)
                    : info.format == TokenFormat::kLlmc ? llmc_header(count)
                                                        : std::string();
  out.reserve(out.size() + tokens.size() * static_cast<size_t>(token_bytes));
  for (int32_t t : tokens) {
    if (wide) {
      store<uint32_t>(out, static_cast<uint32_t>(t));
    } else {
      store<uint16_t>(out, static_cast<uint16_t>(t));
    }
  }
  write_file_atomic(path, out);
}

// ------------------------------------------------------------------------------------
// TokenFile
// ------------------------------------------------------------------------------------

TokenFile::TokenFile(const fs::path& path, int64_t vocab_size) : path_(path) {
  try {
    file_ = MappedFile(path);
  } catch (const Error& e) {
    fail(path, e.what());
  }
  map_ = file_.data();
  map_size_ = file_.size();
  read_header();
  check_vocab(vocab_size);
}

void TokenFile::read_header() {
  const bool retort = map_size_ >= sizeof(kRetortMagic) && std::memcmp(map_, kRetortMagic, sizeof(kRetortMagic)) == 0;
  const int32_t magic = map_size_ >= sizeof(int32_t) ? load<int32_t>(map_) : 0;
  const bool llmc = magic == kLlmcGpt2Magic || magic == kLlmcLlama3Magic;
  format_ = retort ? TokenFormat::kRetort : llmc ? TokenFormat::kLlmc : TokenFormat::kNanoGpt;
  const size_t header = retort ? kRetortHeader : llmc ? kLlmcHeader : 0;
  if (map_size_ < header) {
    fail(path_, "truncated: " + std::to_string(map_size_) + " bytes, less than the " + format_name(format_) +
                    " header's " + std::to_string(header));
  }
  uint64_t count = 0;
  if (retort) {
    count = read_retort_header();
  } else if (llmc) {
    count = read_llmc_header();
  } else if (map_size_ % 2 != 0) {
    fail(path_, std::to_string(map_size_) + " bytes, an odd number: no retort or llm.c header, and not raw uint16 "
                                            "tokens (nanoGPT .bin)");
  } else {
    count = map_size_ / 2;
  }
  const uint64_t payload = map_size_ - header, room = payload / static_cast<uint64_t>(token_bytes_);
  if (count != room || payload % static_cast<uint64_t>(token_bytes_) != 0) {
    fail(path_, std::string(count > room ? "truncated" : "trailing bytes") + ": the " + format_name(format_) +
                    " header declares " + std::to_string(count) + " tokens of " + std::to_string(token_bytes_) +
                    " bytes, but " + std::to_string(payload) + " bytes follow it");
  }
  tokens_ = map_ + header;
  size_ = static_cast<int64_t>(count);
}

uint64_t TokenFile::read_retort_header() {
  const auto version = load<uint32_t>(map_ + 8);
  if (version != kRetortVersion)
    fail(path_, "retort format version " + std::to_string(version) + ", this build reads version 1");
  token_bytes_ = static_cast<int>(load<uint32_t>(map_ + 12));
  if (token_bytes_ != 2 && token_bytes_ != 4)
    fail(path_, "header says " + std::to_string(token_bytes_) + " bytes per token; expected 2 or 4");
  vocab_size_ = static_cast<int64_t>(load<uint64_t>(map_ + 16));
  if (*vocab_size_ < 1) fail(path_, "header says vocab size " + std::to_string(*vocab_size_) + "; expected >= 1");
  text_bytes_ = static_cast<int64_t>(load<uint64_t>(map_ + 32));
  const auto* name = reinterpret_cast<const char*>(map_ + 40);
  tokenizer_.assign(name, strnlen(name, kNameBytes));
  return load<uint64_t>(map_ + 24);
}

uint64_t TokenFile::read_llmc_header() {
  const int32_t magic = load<int32_t>(map_), version = load<int32_t>(map_ + 4);
  const bool llama3 = magic == kLlmcLlama3Magic;
  if (version != (llama3 ? 7 : 1)) {
    fail(path_, "llm.c header with magic " + std::to_string(magic) + " has version " + std::to_string(version) +
                    "; expected " + (llama3 ? "7" : "1"));
  }
  token_bytes_ = llama3 ? 4 : 2;
  const int32_t count = load<int32_t>(map_ + 8);
  if (count < 0) fail(path_, "llm.c header declares " + std::to_string(count) + " tokens");
  return static_cast<uint64_t>(count);
}

void TokenFile::check_vocab(int64_t vocab_size) const {
  if (vocab_size > 0 && vocab_size_ && *vocab_size_ > vocab_size) {
    fail(path_, "tokenized with " + (tokenizer_.empty() ? std::string("a tokenizer") : tokenizer_) + " (" +
                    std::to_string(*vocab_size_) + " ids), more than the model's vocab size " +
                    std::to_string(vocab_size));
  }
  const int64_t limit = vocab_size_ ? *vocab_size_ : vocab_size;
  if (limit <= 0) return;
  const int64_t bad = token_bytes_ == 2
                          ? first_at_or_above(reinterpret_cast<const uint16_t*>(tokens_), size_, limit)
                          : first_at_or_above(reinterpret_cast<const uint32_t*>(tokens_), size_, limit);
  if (bad >= 0) {
    fail(path_, "token " + std::to_string((*this)[bad]) + " at token offset " + std::to_string(bad) +
                    " (byte offset " + std::to_string(tokens_ - map_ + bad * token_bytes_) +
                    ") is outside the vocabulary of " + std::to_string(limit) + " ids");
  }
}

int64_t TokenFile::operator[](int64_t i) const {
  if (i < 0 || i >= size_)
    fail(path_, "token offset " + std::to_string(i) + " is outside the file's " + std::to_string(size_) + " tokens");
  return token_bytes_ == 2 ? load<uint16_t>(tokens_ + 2 * i) : load<uint32_t>(tokens_ + 4 * i);
}

torch::Tensor TokenFile::slice(int64_t offset, int64_t length) const {
  if (offset < 0 || length < 0 || offset > size_ - length) {
    fail(path_, "tokens [" + std::to_string(offset) + ", " + std::to_string(offset + length) +
                    ") are outside the file's " + std::to_string(size_) + " tokens");
  }
  torch::Tensor out = torch::empty({length}, torch::kInt64);
  int64_t* dst = out.data_ptr<int64_t>();
  if (token_bytes_ == 2) {
    const auto* src = reinterpret_cast<const uint16_t*>(tokens_) + offset;
    std::copy(src, src + length, dst);
  } else {
    const auto* src = reinterpret_cast<const uint32_t*>(tokens_) + offset;
    std::copy(src, src + length, dst);
  }
  return out;
}

TokenFile::~TokenFile() = default;

TokenFile::TokenFile(TokenFile&& other) noexcept { *this = std::move(other); }

TokenFile& TokenFile::operator=(TokenFile&& other) noexcept {
  if (this != &other) {
    path_ = std::move(other.path_);
    file_ = std::move(other.file_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    size_ = std::exchange(other.size_, 0);
    token_bytes_ = other.token_bytes_;
    format_ = other.format_;
    vocab_size_ = other.vocab_size_;
    tokenizer_ = std::move(other.tokenizer_);
    text_bytes_ = other.text_bytes_;
  }
  return *this;
}

// ------------------------------------------------------------------------------------
// tokenize_corpus
// ------------------------------------------------------------------------------------

TokenizedCorpus tokenize_corpus(const Tokenizer& tokenizer, const fs::path& corpus, const fs::path& out_dir,
                                double validation_fraction) {
  const TextCorpus text = read_text_corpus(corpus, validation_fraction);
  ensure_writable_dir(out_dir);
  TokenizedCorpus made;
  made.train_path = out_dir / "train.tokens";
  made.validation_path = out_dir / "val.tokens";
  const auto write = [&](std::string_view part, const fs::path& path, int64_t& tokens, int64_t& bytes) {
    const std::vector<int32_t> ids = tokenizer.encode(part);
    write_token_file(path, ids, {TokenFormat::kRetort, tokenizer.vocab_size(), tokenizer.name(),
                                 static_cast<int64_t>(part.size())});
    tokens = static_cast<int64_t>(ids.size());
    bytes = static_cast<int64_t>(part.size());
  };
  write(text.train(), made.train_path, made.train_tokens, made.train_bytes);
  write(text.validation(), made.validation_path, made.validation_tokens, made.validation_bytes);
  return made;
}

}  // namespace retort::data
