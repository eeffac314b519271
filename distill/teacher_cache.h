#pragma once
/// A teacher-output cache for language-model distillation: the teacher runs once over every
/// aligned block of the training tokens (data.windows=blocks: a teacher's output at a
/// position depends on its left context, so the student must see the very same blocks),
/// and its next-token distribution at each position is stored: the top-K log-probabilities
/// at the distillation temperature and their ids, or with K = vocabulary the whole
/// distribution in id order (no ids). Training then reads them memory-mapped instead of
/// running the teacher.
///   distill::TeacherCacheSpec spec{key, /*top_k=*/32, torch::kBFloat16};
///   distill::write_teacher_cache(*teacher, windows, spec, "outputs/lm-cache");   // once
///   distill::TeacherCache cache("outputs/lm-cache");   // CheckpointError (exit 4): missing, truncated
///   cache.check(key);                                  // ConfigError naming what differs
///   distill::TeacherDistribution t = cache.distribution(block_indices);   // [b * context, K]
///
/// On disk: cache.json (what it was made from, its shape), logp.bin ([blocks, context, K]
/// of fp32, fp16 or bf16), ids.bin ([blocks, context, K] int32; absent when K = vocabulary).
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string>

#include "core/mapped_file.h"
#include "data/text_windows.h"
#include "distill/losses.h"
#include "distill/options.h"
#include "models/model.h"

namespace retort::distill {

/// What a cache's contents depend on: the teacher's weights, the corpus, the blocks, the
/// vocabulary and the temperature the log-probabilities are softened by.
struct TeacherCacheKey {
  std::string teacher;         ///< xxh64 (hex) of the teacher's weights file
  std::string teacher_origin;  ///< that file, for messages
  std::string corpus;          ///< xxh64 (hex) of the training token file
  std::string corpus_origin;   ///< that file
  int64_t context = 0;         ///< block length (the student's model.context)
  int64_t vocab_size = 0;
  double temperature = 1.0;
};

struct TeacherCacheSpec {
  TeacherCacheKey key;
  int64_t top_k = 0;                          ///< 0: the whole vocabulary
  torch::ScalarType dtype = torch::kFloat32;  ///< kFloat32, kHalf or kBFloat16
};

/// "fp32", "fp16" or "bf16"; ConfigError for another dtype.
std::string cache_dtype_name(torch::ScalarType dtype);

/// The spec distill.cache.* asks for, around `key`.
TeacherCacheSpec cache_spec(const DistillOptions& options, TeacherCacheKey key);

/// Runs `teacher` (eval mode, no gradients, under the caller's autocast) over every block of
/// `windows` (kBlocks sampling), `batch` blocks at a time, and writes the cache to `dir`,
/// complete or not at all (a temporary directory renamed at the end). ConfigError for
/// windows not in blocks, top_k above the vocabulary, another dtype, `dir` already holding
/// a cache. `progress(done, total)` after each batch.
void write_teacher_cache(models::Model& teacher, const data::TextWindows& windows, const TeacherCacheSpec& spec,
                         const std::filesystem::path& dir, int64_t batch = 16,
                         const std::function<void(int64_t, int64_t)>& progress = {});

class TeacherCache {
 public:
  /// Reads cache.json and maps the data files. CheckpointError (exit 4) naming the file
  /// when one is missing, unreadable, or not the size cache.json implies (truncated).
  explicit TeacherCache(const std::filesystem::path& dir);

  const TeacherCacheSpec& spec() const { return spec_; }
  int64_t blocks() const { return blocks_; }
  const std::filesystem::path& dir() const { return dir_; }

  /// ConfigError naming the cache and every field of `expected` it was not made with
  /// (another teacher, corpus, context, vocabulary or temperature, another top_k or dtype).
  void check(const TeacherCacheSpec& expected) const;

  /// The stored distributions of these blocks ([b] int64), rows block-major: logp
  /// [b * context, K] fp32, ids [b * context, K] int64 (undefined when K = vocabulary).
  /// Error for an index outside [0, blocks()).
  TeacherDistribution distribution(const torch::Tensor& block_indices) const;

 private:
  std::filesystem::path dir_;
  TeacherCacheSpec spec_;
  int64_t blocks_ = 0;
  MappedFile logp_, ids_;
};

}  // namespace retort::distill
