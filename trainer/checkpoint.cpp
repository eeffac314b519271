#include "trainer/checkpoint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "models/safetensors.h"

namespace retort::trainer {
namespace {

constexpr const char* kFormat = "retort-checkpoint-1";
constexpr const char* kManifest = "manifest.json";

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

// Complete checkpoints under dir, oldest first.
std::vector<std::pair<int64_t, fs::path>> complete(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) != 0 || !fs::exists(entry.path() / kManifest)) continue;
    try {
      out.emplace_back(std::stoll(name.substr(5)), entry.path());
    } catch (const std::exception&) {
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void write_into(const fs::path& dir, const std::string& name, const std::string& bytes, nlohmann::json& files) {
  write_file_synced(dir / name, bytes);
  files[name] = {{"size", bytes.size()}, {"xxh64", hex64(xxh64(bytes))}};
}

}  // namespace

Checkpointer::Checkpointer(fs::path dir, int64_t keep_last) : dir_(std::move(dir)), keep_last_(keep_last) {}

fs::path Checkpointer::save(const Checkpoint& ckpt) {
  ensure_writable_dir(dir_);
  const fs::path final_dir = dir_ / step_name(ckpt.step);
  std::random_device rd;
  const fs::path tmp = dir_ / (".tmp-" + step_name(ckpt.step) + "-" + std::to_string(rd()));
  try {
    fs::create_directory(tmp);
    nlohmann::json files = nlohmann::json::object();
    write_into(tmp, "model.safetensors", models::safetensors_bytes(ckpt.model, {{"format", "pt"}}), files);
    write_into(tmp, "state.safetensors", models::safetensors_bytes(ckpt.state), files);
    write_into(tmp, "config.yaml", ckpt.config_yaml, files);
    nlohmann::json manifest = {{"format", kFormat}, {"step", ckpt.step}, {"files", files}};
    write_file_synced(tmp / kManifest, manifest.dump(2) + "\n");  // last: marks the directory complete
    fsync_path(tmp);
    retort::remove_tree(final_dir);  // a checkpoint of the same step written before; nothing if none
    fs::rename(tmp, final_dir);
    fsync_path(dir_);
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    retort::remove_tree(tmp, ec);
    throw CheckpointError("cannot write checkpoint '" + final_dir.string() + "': " + e.code().message());
  } catch (const Error& e) {
    std::error_code ec;
    retort::remove_tree(tmp, ec);
    throw CheckpointError("cannot write checkpoint '" + final_dir.string() + "': " + e.what());
  }
  // Retention: the newest keep_last complete checkpoints, and no leftovers of crashed saves.
  auto all = complete(dir_);
  for (size_t i = 0; i + static_cast<size_t>(keep_last_) < all.size(); ++i) retort::remove_tree(all[i].second);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec))
    if (entry.path().filename().string().rfind(".tmp-", 0) == 0) retort::remove_tree(entry.path(), ec);
  return final_dir;
}

std::optional<fs::path> Checkpointer::latest(const fs::path& dir) {
  auto all = complete(dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

fs::path Checkpointer::resolve(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw CheckpointError("no such checkpoint or run directory: '" + path.string() + "'");
  if (fs::exists(path / kManifest)) return path;
  if (fs::is_directory(path / "checkpoints")) {
    if (auto l = latest(path / "checkpoints")) return *l;
    throw CheckpointError("run directory '" + path.string() + "' has no complete checkpoint in checkpoints/");
  }
  if (auto l = latest(path)) return *l;  // a checkpoints/ directory itself
  throw CheckpointError("'" + path.string() +
                        "' is neither a checkpoint (no manifest.json) nor a run directory (no checkpoints/)");
}

Checkpoint Checkpointer::load(const fs::path& dir) {
  const fs::path manifest_path = dir / kManifest;
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(read_file(manifest_path));
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError("corrupt checkpoint manifest '" + manifest_path.string() + "': " + e.what());
  } catch (const Error& e) {
    throw CheckpointError(std::string("cannot read checkpoint: ") + e.what());
  }
  if (!manifest.is_object() || manifest.value("format", "") != kFormat || !manifest.contains("files") ||
      !manifest["files"].is_object() || !manifest.contains("step"))
    throw CheckpointError("'" + manifest_path.string() + "' is not a " + kFormat + " manifest");
  std::map<std::string, std::string> bytes;
  for (const char* name : {"model.safetensors", "state.safetensors", "config.yaml"}) {
    if (!manifest["files"].contains(name))
      throw CheckpointError("checkpoint manifest '" + manifest_path.string() + "' does not list " + name);
    const auto& entry = manifest["files"][name];
    const fs::path file = dir / name;
    std::string data;
    try {
      data = read_file(file);
    } catch (const Error& e) {
      throw CheckpointError(std::string("checkpoint file missing or unreadable: ") + e.what());
    }
    const uint64_t size = entry.value("size", uint64_t{0});
    if (data.size() != size)
      throw CheckpointError("checkpoint file '" + file.string() + "' is " + std::to_string(data.size()) +
                            " bytes, the manifest says " + std::to_string(size) + " (truncated?)");
    if (hex64(xxh64(data)) != entry.value("xxh64", ""))
      throw CheckpointError("checkpoint file '" + file.string() + "' does not match its xxhash64 in the manifest (altered or corrupt)");
    bytes[name] = std::move(data);
  }
  Checkpoint ckpt;
  ckpt.dir = dir;
  ckpt.step = manifest["step"].get<int64_t>();
  ckpt.model = models::parse_safetensors(bytes["model.safetensors"], (dir / "model.safetensors").string()).tensors;
  ckpt.state = models::parse_safetensors(bytes["state.safetensors"], (dir / "state.safetensors").string()).tensors;
  ckpt.config_yaml = std::move(bytes["config.yaml"]);
  return ckpt;
}

}  // namespace retort::trainer
