#include "distill/teacher_cache.h"

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "core/text.h"
#include "models/eval_scope.h"

namespace retort::distill {
namespace {

constexpr const char* kFormat = "retort-teacher-cache-1";

const std::vector<std::pair<std::string, torch::ScalarType>>& cache_dtype_table() {
  static const std::vector<std::pair<std::string, torch::ScalarType>> names = {
      {"fp32", torch::kFloat32}, {"fp16", torch::kHalf}, {"bf16", torch::kBFloat16}};
  return names;
}

}  // namespace

std::string cache_dtype_name(torch::ScalarType dtype) {
  for (const auto& [name, t] : cache_dtype_table())
    if (t == dtype) return name;
  throw ConfigError(std::string("distill.cache.dtype: expected fp32, fp16 or bf16, got ") + c10::toString(dtype));
}

namespace {

/// The number of ids a spec keeps per token.
int64_t kept(const TeacherCacheSpec& spec) { return spec.top_k == 0 ? spec.key.vocab_size : spec.top_k; }

nlohmann::json to_json(const TeacherCacheSpec& spec, int64_t blocks) {
  const auto& k = spec.key;
  return {{"format", kFormat},         {"teacher", k.teacher}, {"teacher_origin", k.teacher_origin},
          {"corpus", k.corpus},        {"corpus_origin", k.corpus_origin},
          {"context", k.context},      {"vocab_size", k.vocab_size},
          {"temperature", k.temperature}, {"top_k", kept(spec)},
          {"dtype", cache_dtype_name(spec.dtype)}, {"blocks", blocks}};
}

void write_block_rows(std::ofstream& out, const torch::Tensor& t) {
  const auto c = t.contiguous();
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
}

/// The distributions of one batch of blocks: what logp.bin and ids.bin receive.
std::pair<torch::Tensor, torch::Tensor> stored(const torch::Tensor& logits, const TeacherCacheSpec& spec) {
  const auto logp = teacher_distribution(logits, spec.key.temperature).logp;  // [rows, V] fp32
  if (kept(spec) == spec.key.vocab_size) return {logp.to(spec.dtype), {}};
  const auto top = logp.topk(spec.top_k, 1);
  return {std::get<0>(top).to(spec.dtype), std::get<1>(top).to(torch::kInt32)};
}

/// logp.bin, ids.bin (unless every id is kept) and cache.json, into `tmp`.
void write_cache_files(models::Model& teacher, const data::TextWindows& windows, const TeacherCacheSpec& spec,
                       const std::filesystem::path& tmp, int64_t batch,
                       const std::function<void(int64_t, int64_t)>& progress) {
  const bool whole = kept(spec) == spec.key.vocab_size;
  std::ofstream logp_out(tmp / "logp.bin", std::ios::binary), ids_out;
  if (!whole) ids_out.open(tmp / "ids.bin", std::ios::binary);

  torch::NoGradGuard no_grad;
  models::EvalScope eval(teacher);
  const int64_t blocks = windows.size();
  for (int64_t first = 0; first < blocks; first += batch) {
    std::vector<int64_t> indices(static_cast<size_t>(std::min(batch, blocks - first)));
    std::iota(indices.begin(), indices.end(), first);
    const auto [logp, ids] = stored(teacher.forward(windows.batch(indices, 0).first).logits, spec);
    write_block_rows(logp_out, logp);
    if (!whole) write_block_rows(ids_out, ids);
    if (progress) progress(first + static_cast<int64_t>(indices.size()), blocks);
  }
  for (auto* out : {&logp_out, &ids_out}) {
    if (!out->is_open()) continue;
    out->close();
    if (!*out) throw Error("distill: writing the teacher cache in '" + tmp.string() + "' failed (disk full?)");
  }
  fsync_path(tmp / "logp.bin");
  if (!whole) fsync_path(tmp / "ids.bin");
  write_file_atomic(tmp / "cache.json", to_json(spec, blocks).dump(1) + "\n");
}

}  // namespace

void write_teacher_cache(models::Model& teacher, const data::TextWindows& windows, const TeacherCacheSpec& spec,
                         const std::filesystem::path& dir, int64_t batch,
                         const std::function<void(int64_t, int64_t)>& progress) {
  const auto& key = spec.key;
  if (windows.sampling() != data::WindowSampling::kBlocks)
    throw ConfigError("data.windows: a teacher cache holds the teacher's outputs on fixed aligned blocks; set "
                      "data.windows=blocks (random windows would each need the teacher again)");
  if (spec.top_k < 0 || spec.top_k > key.vocab_size)
    throw ConfigError("distill.cache.top_k: expected 0 (the whole vocabulary) up to the vocabulary's " +
                      std::to_string(key.vocab_size) + " ids, got " + std::to_string(spec.top_k));
  cache_dtype_name(spec.dtype);  // refuses any other dtype before anything is written
  if (std::filesystem::exists(dir / "cache.json"))
    throw ConfigError("distill.cache.dir: '" + dir.string() +
                      "' already holds a teacher cache; remove it or choose another directory");
  const auto tmp = dir.parent_path() / (dir.filename().string() + ".tmp-" + std::to_string(::getpid()));
  remove_tree(tmp);
  ensure_writable_dir(tmp);
  try {
    write_cache_files(teacher, windows, spec, tmp, batch, progress);
  } catch (...) {
    std::error_code ec;
    remove_tree(tmp, ec);  // nothing partial left behind
    throw;
  }
  if (!dir.parent_path().empty()) std::filesystem::create_directories(dir.parent_path());
  std::filesystem::rename(tmp, dir);  // complete, or not there at all
  if (!dir.parent_path().empty()) fsync_path(dir.parent_path());
}

namespace {

[[noreturn]] void corrupt(const std::filesystem::path& file, const std::string& what) {
  throw CheckpointError("teacher cache file '" + file.string() + "': " + what);
}

MappedFile map_cache_file(const std::filesystem::path& file, size_t expected_bytes) {
  MappedFile mapped;
  try {
    mapped = MappedFile(file);
  } catch (const Error& e) {
    corrupt(file, e.what());
  }
  if (mapped.size() != expected_bytes)
    corrupt(file, std::to_string(mapped.size()) + " bytes, but cache.json's shape needs " + std::to_string(expected_bytes) +
                      (mapped.size() < expected_bytes ? " (truncated); make the cache again with retort cache-teacher"
                                                      : ""));
  return mapped;
}

}  // namespace

TeacherCache::TeacherCache(const std::filesystem::path& dir) : dir_(dir) {
  const auto meta_path = dir / "cache.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(meta_path));
    if (j.at("format") != kFormat) corrupt(meta_path, "format '" + j.at("format").get<std::string>() + "', expected " + kFormat);
    auto& k = spec_.key;
    k.teacher = j.at("teacher");
    k.teacher_origin = j.at("teacher_origin");
    k.corpus = j.at("corpus");
    k.corpus_origin = j.at("corpus_origin");
    k.context = j.at("context");
    k.vocab_size = j.at("vocab_size");
    k.temperature = j.at("temperature");
    spec_.top_k = j.at("top_k");
    blocks_ = j.at("blocks");
    const std::string dtype = j.at("dtype");
    bool known = false;
    for (const auto& [name, t] : cache_dtype_table())
      if (name == dtype) spec_.dtype = t, known = true;
    if (!known || k.context < 1 || spec_.top_k < 1 || spec_.top_k > k.vocab_size || blocks_ < 1)
      corrupt(meta_path, "an impossible shape or dtype");
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    corrupt(meta_path, std::string("unreadable (") + e.what() + "); make the cache again with retort cache-teacher");
  }
  const auto values = static_cast<size_t>(blocks_ * spec_.key.context * spec_.top_k);
  logp_ = map_cache_file(dir / "logp.bin", values * c10::elementSize(spec_.dtype));
  if (spec_.top_k < spec_.key.vocab_size) ids_ = map_cache_file(dir / "ids.bin", values * sizeof(int32_t));
}

TeacherCacheSpec cache_spec(const DistillOptions& options, TeacherCacheKey key) {
  using D = DistillOptions::CacheDtype;
  const auto dtype = options.cache_dtype == D::kFp16   ? torch::kHalf
                     : options.cache_dtype == D::kBf16 ? torch::kBFloat16
                                                       : torch::kFloat32;
  return {std::move(key), options.cache_top_k, dtype};
}

void TeacherCache::check(const TeacherCacheSpec& expected_spec) const {
  const auto& have = spec_.key;
  const auto& expected = expected_spec.key;
  std::vector<std::string> differs;
  if (have.teacher != expected.teacher)
    differs.push_back("the teacher: made from " + have.teacher_origin + " (weights " + have.teacher + "), this run's is " +
                      expected.teacher_origin + " (weights " + expected.teacher + ")");
  if (have.corpus != expected.corpus)
    differs.push_back("the corpus: made from " + have.corpus_origin + " (" + have.corpus + "), this run reads " +
                      expected.corpus_origin + " (" + expected.corpus + ")");
  if (have.context != expected.context)
    differs.push_back("the context: blocks of " + std::to_string(have.context) + " tokens, this run's model.context is " +
                      std::to_string(expected.context));
  if (have.vocab_size != expected.vocab_size)
    differs.push_back("the vocabulary: " + std::to_string(have.vocab_size) + " ids, this run's model.vocab_size is " +
                      std::to_string(expected.vocab_size));
  if (have.temperature != expected.temperature)
    differs.push_back("the temperature: " + format_number(have.temperature) + ", this run's distill.temperature is " +
                      format_number(expected.temperature));
  if (spec_.top_k != kept(expected_spec) || spec_.dtype != expected_spec.dtype)
    differs.push_back("the storage: top " + std::to_string(spec_.top_k) + " ids in " + cache_dtype_name(spec_.dtype) +
                      ", this run's distill.cache is top_k " + std::to_string(expected_spec.top_k) + " in " +
                      cache_dtype_name(expected_spec.dtype));
  if (differs.empty()) return;
  std::string msg = "distill.cache.dir: the teacher cache '" + dir_.string() + "' was made for another run:";
  for (const auto& d : differs) msg += "\n  " + d;
  throw ConfigError(msg + "\nmake a cache for this run with retort cache-teacher, or unset distill.cache.dir");
}

TeacherDistribution TeacherCache::distribution(const torch::Tensor& block_indices) const {
  const int64_t context = spec_.key.context, k = spec_.top_k;
  const auto idx = block_indices.to(torch::kInt64).contiguous();
  const int64_t n = idx.numel();
  const auto* ptr = idx.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    if (ptr[i] < 0 || ptr[i] >= blocks_)
      throw Error("distill::TeacherCache: block " + std::to_string(ptr[i]) + " is outside the cache's " +
                  std::to_string(blocks_) + " blocks (" + dir_.string() + ")");
  // The mapped files as [blocks, context * K] tensors (no copy); index_select copies the rows.
  auto view = [&](const MappedFile& f, torch::ScalarType dtype) {
    return torch::from_blob(const_cast<unsigned char*>(f.data()), {blocks_, context * k},
                            torch::TensorOptions().dtype(dtype));
  };
  TeacherDistribution out;
  out.logp = view(logp_, spec_.dtype).index_select(0, idx).reshape({n * context, k}).to(torch::kFloat32);
  if (k < spec_.key.vocab_size) out.ids = view(ids_, torch::kInt32).index_select(0, idx).reshape({n * context, k}).to(torch::kInt64);
  return out;
}

}  // namespace retort::distill
