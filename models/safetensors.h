#pragma once
/// The safetensors format (8-byte little-endian header size, JSON header, raw tensor
/// bytes): what PyTorch / Hugging Face users load with safetensors.torch.load_file. retort
/// uses it for exported weights AND for checkpoints, so loading never runs code.
///   retort::save_safetensors(path, {{"fc0.weight", w}}, {{"step", "12"}});
///   auto file = retort::load_safetensors(path);   // file.tensors.at("fc0.weight")
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>

namespace retort::models {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;     // CPU, contiguous
  std::map<std::string, std::string> metadata;      // "__metadata__"
};

/// Serializes to bytes (tensors are copied to CPU, contiguous). Names must be unique and
/// non-empty; dtypes: f64 f32 f16 bf16 i64 i32 i16 i8 u8 bool.
std::string safetensors_bytes(const std::map<std::string, torch::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});
/// Writes atomically (temporary file, fsync, rename).
void save_safetensors(const std::filesystem::path& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
/// Parses and validates every header field against the file's size; CheckpointError
/// naming the file (and the tensor) on any inconsistency.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& origin);
SafetensorsFile load_safetensors(const std::filesystem::path& path);

}  // namespace retort::models
