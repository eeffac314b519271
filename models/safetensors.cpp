#include "models/safetensors.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fs.h"

namespace retort::models {
namespace {

struct DtypeName {
  torch::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {
    {torch::kFloat64, "F64"}, {torch::kFloat32, "F32"}, {torch::kFloat16, "F16"}, {torch::kBFloat16, "BF16"},
    {torch::kInt64, "I64"},   {torch::kInt32, "I32"},   {torch::kInt16, "I16"},   {torch::kInt8, "I8"},
    {torch::kUInt8, "U8"},    {torch::kBool, "BOOL"},
};

const char* dtype_name(torch::ScalarType t, const std::string& tensor) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw Error("safetensors: tensor '" + tensor + "' has unsupported dtype " + std::string(c10::toString(t)));
}

bool dtype_from_name(const std::string& name, torch::ScalarType* out) {
  for (const auto& d : kDtypes)
    if (name == d.name) {
      *out = d.type;
      return true;
    }
  return false;
}

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw CheckpointError("corrupt safetensors file '" + origin + "': " + what);
}

}  // namespace

std::string safetensors_bytes(const std::map<std::string, torch::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {  // std::map: sorted by name
    if (name.empty() || name == "__metadata__") throw Error("safetensors: invalid tensor name '" + name + "'");
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", dtype_name(t.scalar_type(), name)},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(t);
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  std::string out;
  out.reserve(8 + json.size() + offset);
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += json;
  for (const auto& t : data)
    out.append(reinterpret_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
  return out;
}

void save_safetensors(const std::filesystem::path& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, safetensors_bytes(tensors, metadata));
}

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& origin) {
  if (bytes.size() < 8) bad(origin, "file is " + std::to_string(bytes.size()) + " bytes, shorter than its 8-byte header size");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (n > bytes.size() - 8) bad(origin, "header size " + std::to_string(n) + " exceeds the file (truncated?)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const nlohmann::json::exception& e) {
    bad(origin, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) bad(origin, "header is not a JSON object");
  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;
  SafetensorsFile file;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) bad(origin, "__metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) bad(origin, "__metadata__ value of '" + m.key() + "' is not a string");
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    try {
      torch::ScalarType type;
      if (!dtype_from_name(entry.at("dtype").get<std::string>(), &type))
        bad(origin, "tensor '" + name + "' has unknown dtype " + entry.at("dtype").dump());
      auto shape = entry.at("shape").get<std::vector<int64_t>>();
      auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
      if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > data_size)
        bad(origin, "tensor '" + name + "' has data offsets " + entry.at("data_offsets").dump() +
                        " outside the " + std::to_string(data_size) + "-byte data section (truncated?)");
      uint64_t numel = 1;
      for (int64_t d : shape) {
        if (d < 0) bad(origin, "tensor '" + name + "' has a negative dimension");
        numel *= static_cast<uint64_t>(d);
      }
      auto t = torch::empty(shape, torch::TensorOptions().dtype(type));
      if (numel * t.element_size() != offsets[1] - offsets[0])
        bad(origin, "tensor '" + name + "' shape " + entry.at("shape").dump() + " needs " +
                        std::to_string(numel * t.element_size()) + " bytes, offsets give " +
                        std::to_string(offsets[1] - offsets[0]));
      std::memcpy(t.data_ptr(), data + offsets[0], offsets[1] - offsets[0]);
      spans.emplace_back(offsets[0], offsets[1]);
      file.tensors.emplace(name, std::move(t));
    } catch (const nlohmann::json::exception& e) {
      bad(origin, "tensor '" + name + "' has a malformed entry: " + e.what());
    }
  }
  std::sort(spans.begin(), spans.end());
  uint64_t end = 0;
  for (const auto& s : spans) {
    if (s.first != end) bad(origin, "tensor data overlaps or leaves a gap at byte " + std::to_string(s.first));
    end = s.second;
  }
  if (end != data_size) bad(origin, std::to_string(data_size - end) + " trailing bytes after the last tensor");
  return file;
}

SafetensorsFile load_safetensors(const std::filesystem::path& path) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const Error& e) {
    throw CheckpointError(e.what());
  }
  return parse_safetensors(bytes, path.string());
}

}  // namespace retort::models
