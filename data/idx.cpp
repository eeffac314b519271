#include "data/idx.h"
#include "data/text_windows.h"
#include "data/token_file.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>

#include "core/error.h"
#include "core/text.h"
#include "core/fs.h"

namespace retort::data {
namespace {

namespace fs = std::filesystem;

constexpr uint8_t kTypeUbyte = 0x08;
// Largest payload we accept: far beyond any IDX data set, far below int64 overflow.
constexpr uint64_t kMaxPayload = uint64_t{1} << 40;
// Deflate cannot compress better than about 1032:1, so a gzip stream of n bytes holds at
// most ~1032 n bytes; a header claiming more is corrupt, and we say so before allocating.
constexpr uint64_t kMaxDeflateRatio = 1032;

[[noreturn]] void fail(const std::string& source, const std::string& problem) {
  throw DataError("IDX file '" + source + "': " + problem);
}

std::string hex_byte(uint8_t b) {
  static const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

/// A byte source: read(dst, n) returns how many bytes it wrote (< n only at the end).
using Reader = std::function<size_t(uint8_t*, size_t)>;

/// Streams the inflated content of a (possibly multi-member) gzip file held in memory.
class GzipReader {
 public:
  GzipReader(std::string_view bytes, std::string source) : source_(std::move(source)) {
    std::memset(&zs_, 0, sizeof(zs_));
    // 16 + MAX_WBITS: gzip wrapper only, with its CRC and length checked by zlib.
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) fail(source_, "zlib inflateInit2 failed");
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
    zs_.avail_in = static_cast<uInt>(std::min<size_t>(bytes.size(), std::numeric_limits<uInt>::max()));
    remaining_in_ = bytes.size() - zs_.avail_in;  // inputs over 4 GiB are fed in pieces
  }
  ~GzipReader() { inflateEnd(&zs_); }
  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;

  size_t read(uint8_t* dst, size_t n) {
    size_t done = 0;
    while (done < n && !finished_) {
      refill();
      const size_t chunk = std::min<size_t>(n - done, std::numeric_limits<uInt>::max());
      zs_.next_out = dst + done;
      zs_.avail_out = static_cast<uInt>(chunk);
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      done += chunk - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        refill();
        if (zs_.avail_in == 0) {
          finished_ = true;
        } else if (zs_.avail_in >= 2 && zs_.next_in[0] == 0x1f && zs_.next_in[1] == 0x8b) {
          inflateReset(&zs_);  // another gzip member follows (as `cat a.gz b.gz` makes)
        } else {
          fail(source_, std::to_string(zs_.avail_in + remaining_in_) +
                            " bytes of garbage after the end of the gzip stream");
        }
      } else if (rc == Z_BUF_ERROR && zs_.avail_in == 0 && remaining_in_ == 0) {
        fail(source_, "truncated gzip stream (it ends before the gzip trailer) after " +
                          std::to_string(zs_.total_out) + " bytes of decompressed data");
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        fail(source_, std::string("corrupt gzip stream: ") + (zs_.msg ? zs_.msg : "inflate error " + std::to_string(rc)));
      }
    }
    return done;
  }

 private:
  void refill() {
    if (zs_.avail_in == 0 && remaining_in_ > 0) {
      const size_t chunk = std::min<size_t>(remaining_in_, std::numeric_limits<uInt>::max());
      zs_.avail_in = static_cast<uInt>(chunk);
      remaining_in_ -= chunk;
    }
  }

  z_stream zs_;
  std::string source_;
  size_t remaining_in_ = 0;
  bool finished_ = false;
};

uint32_t big_endian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string dims_text(const std::vector<int64_t>& dims) { return join(dims, [](int64_t d) { return std::to_string(d); }, "x"); }

/// Parses header and payload from `read`. `max_total` bounds the bytes the source can
/// yield, so a corrupt header fails before a huge allocation.
torch::Tensor parse_from(const Reader& read, uint64_t max_total, const std::string& source) {
  uint8_t magic[4];
  const size_t got = read(magic, 4);
  if (got < 4) fail(source, "truncated: " + std::to_string(got) + " bytes, shorter than the 4-byte magic");
  if (magic[0] != 0 || magic[1] != 0) {
    fail(source, "bad magic " + hex_byte(magic[0]) + " " + hex_byte(magic[1]) + " " + hex_byte(magic[2]) + " " +
                     hex_byte(magic[3]) + ": an IDX file starts with 0x00 0x00 <type> <ndims>");
  }
  if (magic[2] != kTypeUbyte) {
    fail(source, "unsupported element type " + hex_byte(magic[2]) + " (only unsigned byte 0x08 is supported)");
  }
  const int ndims = magic[3];
  if (ndims == 0) fail(source, "header declares 0 dimensions (expected at least 1)");

  std::vector<uint8_t> raw(4 * static_cast<size_t>(ndims));
  const size_t got_dims = read(raw.data(), raw.size());
  if (got_dims < raw.size()) {
    fail(source, "truncated header: " + std::to_string(ndims) + " dimensions need " + std::to_string(raw.size()) +
                     " bytes, found " + std::to_string(got_dims));
  }
  std::vector<int64_t> dims(ndims);
  uint64_t payload = 1;
  for (int i = 0; i < ndims; ++i) {
    dims[i] = big_endian32(&raw[4 * i]);
    if (dims[i] != 0 && payload > kMaxPayload / static_cast<uint64_t>(dims[i])) {
      fail(source, "dimensions " + dims_text(std::vector<int64_t>(dims.begin(), dims.begin() + i + 1)) +
                       "... exceed " + std::to_string(kMaxPayload) + " bytes");
    }
    payload *= static_cast<uint64_t>(dims[i]);
  }
  const uint64_t header = 4 + raw.size();
  const uint64_t room = max_total > header ? max_total - header : 0;
  if (payload > room) {
    fail(source, "truncated: header declares " + dims_text(dims) + " = " + std::to_string(payload) +
                     " payload bytes, but the file can hold at most " + std::to_string(room));
  }

  torch::Tensor out = torch::empty(dims, torch::kUInt8);
  const size_t got_payload = payload > 0 ? read(out.data_ptr<uint8_t>(), payload) : 0;
  if (got_payload < payload) {
    fail(source, "truncated: header declares " + dims_text(dims) + " = " + std::to_string(payload) +
                     " payload bytes, found " + std::to_string(got_payload));
  }
  uint8_t extra[4096];
  size_t trailing = 0;
  for (size_t n; (n = read(extra, sizeof(extra))) > 0;) trailing += n;
  if (trailing > 0) {
    fail(source, std::to_string(trailing) + " trailing bytes after the " + std::to_string(payload) +
                     "-byte payload of " + dims_text(dims));
  }
  return out;
}

const char* kFashionHint = "install the Debian package dataset-fashion-mnist (apt install dataset-fashion-mnist)";
const char* kMnistHint = "put the MNIST IDX files (train/t10k images-idx3/labels-idx1, plain or .gz) there";

fs::path find_file(const fs::path& root, const std::string& stem, const std::string& what, const std::string& hint) {
  const fs::path plain = root / stem;
  const fs::path gz = root / (stem + ".gz");
  std::error_code ec;
  if (fs::is_regular_file(plain, ec)) return plain;
  if (fs::is_regular_file(gz, ec)) return gz;
  throw DataError(what + " not found: neither '" + plain.string() + "' nor '" + gz.string() + "' exists; " + hint);
}

}  // namespace

torch::Tensor parse_idx(std::string_view bytes, const std::string& source) {
  if (bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f && static_cast<uint8_t>(bytes[1]) == 0x8b) {
    GzipReader gz(bytes, source);
    const uint64_t bound = std::min<uint64_t>(kMaxPayload, uint64_t{bytes.size()} * kMaxDeflateRatio);
    return parse_from([&](uint8_t* dst, size_t n) { return gz.read(dst, n); }, bound, source);
  }
  size_t pos = 0;
  Reader plain = [&](uint8_t* dst, size_t n) {
    const size_t k = std::min(n, bytes.size() - pos);
    std::memcpy(dst, bytes.data() + pos, k);
    pos += k;
    return k;
  };
  return parse_from(plain, bytes.size(), source);
}

torch::Tensor read_idx(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw DataError("IDX file '" + path.string() + "' does not exist");
  if (!fs::is_regular_file(path, ec)) throw DataError("IDX file '" + path.string() + "' is not a regular file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw DataError("IDX file '" + path.string() + "': cannot open: " + std::strerror(errno));
  std::string bytes(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()))) {
    throw DataError("IDX file '" + path.string() + "': read error: " + std::strerror(errno));
  }
  return parse_idx(bytes, path.string());
}

void write_idx(const fs::path& path, const torch::Tensor& t) {
  if (!t.defined() || t.scalar_type() != torch::kUInt8 || t.dim() < 1 || t.dim() > 255) {
    throw Error("write_idx '" + path.string() + "': expected a uint8 tensor with 1 to 255 dims");
  }
  std::string bytes = {'\0', '\0', static_cast<char>(kTypeUbyte), static_cast<char>(t.dim())};
  for (int64_t d : t.sizes()) {
    if (d > std::numeric_limits<uint32_t>::max()) throw Error("write_idx '" + path.string() + "': dim too large");
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((d >> shift) & 0xff));
  }
  const torch::Tensor c = t.contiguous().cpu();
  bytes.append(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
  write_file_atomic(path, bytes);
}

int64_t Dataset::size() const {
  if (text) return text->size();
  return images.defined() ? images.size(0) : 0;
}

namespace {

void check_name(const std::string& name) {
  if (name != "fashion-mnist" && name != "mnist" && name != "text") {
    throw ConfigError("data.name: unknown dataset '" + name + "' (expected 'fashion-mnist', 'mnist' or 'text')");
  }
}

void check_split(const std::string& split) {
  if (split != "train" && split != "test")
    throw ConfigError("unknown data split '" + split + "' (expected 'train' or 'test')");
}

Dataset load_impl(const fs::path& root, const std::string& split, int64_t num_classes, const std::string& hint) {
  check_split(split);
  if (num_classes < 1 || num_classes > 256) {
    throw ConfigError("num_classes must be in [1, 256] for uint8 IDX labels, got " + std::to_string(num_classes));
  }
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    throw DataError("dataset root '" + root.string() + "' does not exist or is not a directory; " + hint);
  }
  const std::string prefix = split == "train" ? "train" : "t10k";
  const fs::path images_path = find_file(root, prefix + "-images-idx3-ubyte", split + " images", hint);
  const fs::path labels_path = find_file(root, prefix + "-labels-idx1-ubyte", split + " labels", hint);

  torch::Tensor images = read_idx(images_path);
  torch::Tensor labels = read_idx(labels_path);
  if (images.dim() != 3) {
    throw DataError("IDX file '" + images_path.string() + "': expected 3 dims [N, rows, cols] for images, got " +
                    std::to_string(images.dim()));
  }
  if (labels.dim() != 1) {
    throw DataError("IDX file '" + labels_path.string() + "': expected 1 dim [N] for labels, got " +
                    std::to_string(labels.dim()));
  }
  if (images.size(0) != labels.size(0)) {
    throw DataError("image/label count mismatch: '" + images_path.string() + "' has " +
                    std::to_string(images.size(0)) + " images, '" + labels_path.string() + "' has " +
                    std::to_string(labels.size(0)) + " labels");
  }
  // uint8 labels cannot reach 256, and comparing with 256 would wrap to 0 in uint8.
  const torch::Tensor bad = num_classes < 256 ? (labels >= num_classes).nonzero() : torch::empty({0, 1});
  if (bad.size(0) > 0) {
    const int64_t i = bad[0][0].item<int64_t>();
    throw DataError("IDX file '" + labels_path.string() + "': label " + std::to_string(labels[i].item<int>()) +
                    " of sample " + std::to_string(i) + " is out of range (num_classes " +
                    std::to_string(num_classes) + "); " + std::to_string(bad.size(0)) + " such labels in all");
  }
  Dataset d;
  d.images = images.unsqueeze(1);  // [N, 1, H, W]
  d.labels = labels.to(torch::kInt64);
  d.num_classes = num_classes;
  return d;
}

}  // namespace

Dataset load_idx_dataset(const fs::path& root, const std::string& split, int64_t num_classes) {
  // The files do not say which data set they are; the default root is where the Debian
  // package puts Fashion-MNIST, so that is the likely fix.
  return load_impl(root, split, num_classes, std::string(kFashionHint) + " (for MNIST: " + kMnistHint + ")");
}

Dataset head(const Dataset& d, int64_t n) {
  if (n <= 0 || n >= d.size()) return d;
  Dataset out = d;
  out.images = d.images.narrow(0, 0, n);
  out.labels = d.labels.narrow(0, 0, n);
  return out;
}

namespace {

std::filesystem::path token_file_of(const DataOptions& opts, const std::string& split) {
  const std::string stem = split == "train" ? "train" : "val";
  const std::filesystem::path root = opts.root;
  for (const char* ext : {".tokens", ".bin"})
    if (std::filesystem::exists(root / (stem + ext))) return root / (stem + ext);
  throw DataError("data.root: no " + stem + ".tokens (or " + stem + ".bin) in " + root.string() +
                  "; make them with `retort tokenize <text file or folder> " + root.string() + "`");
}

Dataset load_text_dataset(const DataOptions& opts, const std::string& split, const WindowShape& shape) {
  check_split(split);
  if (shape.context < 1) throw ConfigError("data.name=text needs a language model (model.name: gpt)");
  auto file = std::make_shared<const TokenFile>(token_file_of(opts, split), shape.vocab_size);
  if (!file->tokenizer().empty() && file->tokenizer() != opts.tokenizer.name)
    throw ConfigError("data.tokenizer.name is " + opts.tokenizer.name + " but " + file->path().string() +
                      " was made with " + file->tokenizer());
  Dataset d;
  if (split == "train") {
    d.text = std::make_shared<const TextWindows>(file, shape.context, opts.windows, shape.seed, opts.subset);
  } else {
    const int64_t windows = opts.eval_tokens > 0 ? std::max<int64_t>(1, opts.eval_tokens / shape.context) : 0;
    d.text = std::make_shared<const TextWindows>(file, shape.context, WindowSampling::kBlocks, 0, windows);
  }
  d.num_classes = shape.vocab_size;
  return d;
}

}  // namespace

Dataset load_dataset(const DataOptions& opts, const std::string& split, const WindowShape& shape) {
  opts.validate();
  if (opts.text()) return load_text_dataset(opts, split, shape);
  const std::string hint = opts.name == "mnist" ? std::string(kMnistHint) : std::string(kFashionHint);
  return head(load_impl(opts.root, split, 10, hint), opts.subset);
}

PixelStats pixel_stats(const std::string& name) {
  check_name(name);
  return name == "mnist" ? PixelStats{0.1307, 0.3081} : PixelStats{0.2860, 0.3530};
}

void DataOptions::validate() const {
  check_name(name);
  auto positive = [](const char* key, int64_t v) {
    if (v <= 0) throw ConfigError(std::string("data.") + key + " must be > 0, got " + std::to_string(v));
  };
  positive("batch_size", batch_size);
  positive("eval_batch_size", eval_batch_size);
  if (prefetch < 0) throw ConfigError("data.prefetch must be >= 0, got " + std::to_string(prefetch));
  if (!(mixup >= 0) || !std::isfinite(mixup)) {
    throw ConfigError("data.mixup must be a finite number >= 0 (0: off; 0.2-1 typical), got " + std::to_string(mixup));
  }
  if (subset < 0) throw ConfigError("data.subset must be >= 0 (0 = all), got " + std::to_string(subset));
  if (root.empty()) throw ConfigError("data.root must not be empty");
  if (eval_tokens < 0) throw ConfigError("data.eval_tokens must be >= 0 (0 = all), got " + std::to_string(eval_tokens));
  if (text()) tokenizer.validate();
}

}  // namespace retort::data

namespace retort::data {

void DataOptions::declare(config::Fields<DataOptions>& f) {
  f.add("name", &DataOptions::name, "dataset; text: token files for a language model").one_of({"fashion-mnist", "mnist", "text"});
  f.add("root", &DataOptions::root, "folder of the IDX files (plain or .gz), or of train.tokens and val.tokens");
  f.add("batch_size", &DataOptions::batch_size, "global batch size, summed over all ranks").min(1);
  f.add("augment", &DataOptions::augment, "random crop (2px padding) and horizontal flip on training batches");
  f.add("mixup", &DataOptions::mixup,
        "mixup's Beta(a, a) parameter a: training inputs lam x + (1 - lam) x[perm], labels mixed alike; 0: off")
      .min(0.0);
  f.add("prefetch", &DataOptions::prefetch, "batches prepared ahead on a background thread").min(0);
  f.add("subset", &DataOptions::subset, "keep the first n samples of each split (0: all)").min(0);
  f.add("eval_batch_size", &DataOptions::eval_batch_size, "global batch size for evaluation").min(1);
  f.add_section("tokenizer", &DataOptions::tokenizer);
  f.add("windows", &DataOptions::windows, "text: training windows at random offsets or in aligned blocks");
  f.add("eval_tokens", &DataOptions::eval_tokens, "text: validation tokens evaluated (0: all)").min(0);
}

}  // namespace retort::data
