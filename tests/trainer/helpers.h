#pragma once
// Shared by the tests/trainer sources: a reader of TensorBoard events files that works as
// TensorBoard does, independently of the writer (TFRecord framing, both masked CRC32Cs of
// every record checked with a bit-by-bit CRC32C written here, every payload parsed with the
// classes protoc generated from tests/trainer/tensorboard/*.proto; a check that fails is a
// test failure), and a scratch folder per test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/fs.h"
#include "tensorboard/event.pb.h"

namespace retort::test {

/// CRC32C one bit at a time from the reflected Castagnoli polynomial (no table).
inline uint32_t bitwise_crc32c(const std::string& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : bytes) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

/// TFRecord's masking of a CRC.
inline uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

inline uint64_t little_endian(const std::string& bytes, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return v;
}

/// True when parsing left bytes that no field of the definitions claims (a wrong field
/// number or wire type ends up there).
inline bool has_unknown_fields(const tensorboard::Event& e) {
  auto unknown = [](const google::protobuf::Message& m) {
    return !m.GetReflection()->GetUnknownFields(m).empty();
  };
  bool any = unknown(e) || unknown(e.summary());
  for (const auto& v : e.summary().value()) any = any || unknown(v);
  return any;
}

/// Every record of `file`, in order.
inline std::vector<tensorboard::Event> read_events(const std::filesystem::path& file) {
  const std::string data = retort::read_file(file);
  std::vector<tensorboard::Event> events;
  for (size_t at = 0; at < data.size();) {
    if (data.size() - at < 12) {
      ADD_FAILURE() << file << ": a record header cut short at byte " << at;
      break;
    }
    const uint64_t length = little_endian(data, at, 8);
    EXPECT_EQ(little_endian(data, at + 8, 4), masked(bitwise_crc32c(data.substr(at, 8))))
        << file << ": CRC of the length at byte " << at;
    if (data.size() - at < 16 || length > data.size() - at - 16) {
      ADD_FAILURE() << file << ": a record of " << length << " bytes cut short at byte " << at;
      break;
    }
    const std::string payload = data.substr(at + 12, length);
    EXPECT_EQ(little_endian(data, at + 12 + length, 4), masked(bitwise_crc32c(payload)))
        << file << ": CRC of the record at byte " << at;
    tensorboard::Event event;
    EXPECT_TRUE(event.ParseFromString(payload)) << file << ": record at byte " << at;
    EXPECT_FALSE(has_unknown_fields(event)) << file << ": record at byte " << at << ": " << event.DebugString();
    events.push_back(std::move(event));
    at += 12 + length + 4;
  }
  return events;
}

/// The events files of `dir`, by name (the order TensorBoard reads them in).
inline std::vector<std::filesystem::path> events_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().filename().string().find("tfevents") != std::string::npos) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace retort::test
