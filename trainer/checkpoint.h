#pragma once
/// Checkpoints: one directory per save, published atomically.
///   run/checkpoints/step-00000120/{model.safetensors, state.safetensors, config.yaml, manifest.json}
/// Written into a hidden temporary directory (every file fsync'ed, manifest last), then
/// renamed into place, so a crash never leaves a directory that looks complete. The
/// manifest lists every file with its size and xxhash64; loading verifies them. Only
/// safetensors archives are read, never code.
///   Checkpointer ckpt(run_dir / "checkpoints", keep_last);
///   ckpt.save(contents);
///   auto latest = Checkpointer::latest(run_dir / "checkpoints");   // newest complete
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace retort::trainer {

namespace fs = std::filesystem;

struct Checkpoint {
  int64_t step = 0;
  std::map<std::string, torch::Tensor> model;  ///< exportable weights (parameters + buffers)
  std::map<std::string, torch::Tensor> state;  ///< optimizer, sampler, RNG, scaler, masks, extra modules
  std::string config_yaml;                     ///< the resolved config of the run
  fs::path dir;                                ///< where it was read from / written to
};

class Checkpointer {
 public:
  Checkpointer(fs::path dir, int64_t keep_last);
  /// Publishes `ckpt` as step-<step>; replaces an existing one of the same step; then
  /// deletes the oldest beyond keep_last and stale temporary directories. Returns its path.
  fs::path save(const Checkpoint& ckpt);

  /// Newest complete checkpoint (one with a manifest) under `dir`, if any.
  static std::optional<fs::path> latest(const fs::path& dir);
  /// Loads and verifies a checkpoint directory; CheckpointError naming the file otherwise.
  static Checkpoint load(const fs::path& ckpt_dir);
  /// A checkpoint directory, or a run directory (its newest checkpoint); CheckpointError
  /// saying what was expected otherwise.
  static fs::path resolve(const fs::path& run_dir_or_checkpoint);

 private:
  fs::path dir_;
  int64_t keep_last_;
};

}  // namespace retort::trainer
