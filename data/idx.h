#pragma once
/// IDX files (the MNIST / Fashion-MNIST format), plain or gzip, and the image datasets
/// built from them.
///   auto train = data::load_idx_dataset("/usr/share/datasets/fashion-mnist", "train");
///   auto small = data::head(train, 2000);            // first 2000 samples
///   torch::Tensor t = data::read_idx("t10k-labels-idx1-ubyte.gz");   // [10000] uint8
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "data/options.h"

namespace retort::data {

/// Reads an IDX file (gzip detected by its 1f 8b magic, else plain). Returns a uint8
/// tensor with the dims in the header (idx3 -> [N, rows, cols], idx1 -> [N]).
/// Validates: file exists, magic (0x00 0x00 0x08 <ndims>, only ubyte 0x08 supported),
/// dims, exact payload size (truncated or trailing bytes). DataError naming file + problem.
torch::Tensor read_idx(const std::filesystem::path& path);

/// read_idx on bytes already in memory; `source` names them in error messages.
torch::Tensor parse_idx(std::string_view bytes, const std::string& source);

/// Writes `t` (uint8, 1 to 255 dims) as a plain IDX file, atomically. For tools and tests.
void write_idx(const std::filesystem::path& path, const torch::Tensor& t);

class TextWindows;

/// The samples a Loader batches: labelled images, or (`text` set) the token windows of a
/// language model's corpus, whose labels are the next tokens.
struct Dataset {
  torch::Tensor images;  // [N, 1, H, W] uint8
  torch::Tensor labels;  // [N] int64
  int64_t num_classes = 10;
  std::shared_ptr<const TextWindows> text;  // data/text_windows.h; images and labels then undefined
  int64_t size() const;
};

/// name: "fashion-mnist" or "mnist" (same layout); split: "train" or "test".
/// Files: <root>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (plain preferred when
/// both exist). Errors (DataError): missing root or files (the message names the path and,
/// for fashion-mnist, the Debian package dataset-fashion-mnist); image/label count
/// mismatch; label >= num_classes (names the sample index and value). ConfigError: unknown
/// name or split, num_classes outside [1, 256].
Dataset load_idx_dataset(const std::filesystem::path& root, const std::string& split,
                         int64_t num_classes = 10);

/// Keep only the first n samples (n <= 0 means all): for smoke tests / data subsets.
/// Shares storage with `d`.
Dataset head(const Dataset& d, int64_t n);

/// What a language model's token windows take from the model and the run.
struct WindowShape {
  int64_t context = 0;     ///< tokens a window feeds the model (model.context)
  int64_t vocab_size = 0;  ///< every token must be below it (model.vocab_size)
  uint64_t seed = 0;       ///< random window offsets are drawn from it
};

/// The split ("train" or "test") that opts describes. Images: load_idx_dataset(opts.root,
/// split) for opts.name, then head(opts.subset). Text (`text` needs `shape.context`): the
/// token file of the split under opts.root (train.tokens / val.tokens, else train.bin /
/// val.bin), memory-mapped; training windows as opts.windows says (at most opts.subset),
/// the validation split in aligned blocks (at most opts.eval_tokens tokens' worth).
Dataset load_dataset(const DataOptions& opts, const std::string& split, const WindowShape& shape = {});

/// Per-pixel mean and standard deviation (of x / 255) of a dataset's training split, used
/// to normalize: {0.2860, 0.3530} for fashion-mnist, {0.1307, 0.3081} for mnist.
/// ConfigError for other names.
struct PixelStats {
  double mean;
  double stddev;
};
PixelStats pixel_stats(const std::string& name);

}  // namespace retort::data
