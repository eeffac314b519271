#include "trainer/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>
#include <type_traits>

#include "core/error.h"
#include "core/fs.h"

namespace retort::trainer {

namespace {

// CRC32C lookup table for the reflected Castagnoli polynomial, one entry per byte value.
constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// ---- protobuf wire encoding: just what tensorboard.Event with a scalar Summary needs ----

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out.push_back(static_cast<char>((v & 0x7F) | 0x80));
  out.push_back(static_cast<char>(v));
}

void put_little_endian(std::string& out, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, (field << 3) | type); }

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

// A double as fixed64 or a float as fixed32, bit for bit.
template <typename Real>
void put_real(std::string& out, uint32_t field, Real v) {
  std::conditional_t<sizeof(Real) == 8, uint64_t, uint32_t> bits;
  static_assert(sizeof bits == sizeof v, "double or float");
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, sizeof bits == 8 ? kFixed64 : kFixed32);
  put_little_endian(out, bits, sizeof bits);
}

// tensorboard.Event: wall_time = 1, step = 2, file_version = 3, summary = 5.
// tensorboard.Summary: value = 1; Summary.Value: tag = 1, simple_value = 2.
std::string event_header(double wall_time, int64_t step) {
  std::string event;
  put_real(event, 1, wall_time);
  put_key(event, 2, kVarint);
  put_varint(event, static_cast<uint64_t>(step));  // int64: two's complement, as protobuf does
  return event;
}

std::string scalar_event(const std::string& tag, double value, int64_t step, double wall_time) {
  std::string summary_value;
  put_bytes(summary_value, 1, tag);
  put_real(summary_value, 2, static_cast<float>(value));
  std::string summary;
  put_bytes(summary, 1, summary_value);
  std::string event = event_header(wall_time, step);
  put_bytes(event, 5, summary);
  return event;
}

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

std::string errno_message(int err) { return std::error_code(err, std::generic_category()).message(); }

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

EventWriter::~EventWriter() {
  try {
    close();
  } catch (const Error&) {
    if (fd_ >= 0) ::close(fd_);
  }
}

void EventWriter::open(const std::filesystem::path& dir) {
  close();
  ensure_writable_dir(dir);
  const double now = unix_seconds();
  const std::string base = "events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." + host_name();
  // Never another run's file: a run resumed within the same second takes the next suffix.
  for (int n = 0; fd_ < 0; ++n) {
    path_ = dir / (n == 0 ? base : base + "." + std::to_string(n));
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0 && errno != EEXIST)
      throw Error("cannot create TensorBoard events file '" + path_.string() + "': " + errno_message(errno));
  }
  written_ = 0;
  std::string version = event_header(now, 0);
  put_bytes(version, 3, "brain.Event:2");
  append_record(version);
  flush();
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  if (fd_ < 0) throw Error("TensorBoard scalar '" + tag + "' added before an events file was opened");
  append_record(scalar_event(tag, value, step, wall_time));
}

// TFRecord framing: uint64 length, masked CRC of those 8 bytes, payload, masked CRC of it.
void EventWriter::append_record(const std::string& event) {
  std::string length;
  put_little_endian(length, event.size(), 8);
  pending_ += length;
  put_little_endian(pending_, masked_crc32c(length.data(), length.size()), 4);
  pending_ += event;
  put_little_endian(pending_, masked_crc32c(event.data(), event.size()), 4);
}

void EventWriter::flush() {
  if (fd_ < 0 || pending_.empty()) return;
  for (size_t done = 0; done < pending_.size();) {
    const ssize_t n = ::write(fd_, pending_.data() + done, pending_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? errno_message(errno) : "no space written";
      // Cut back to the last whole record so that readers never meet half of one.
      if (::ftruncate(fd_, written_) != 0 || ::lseek(fd_, written_, SEEK_SET) < 0) {
        ::close(fd_);
        fd_ = -1;
      }
      pending_.clear();
      throw Error("cannot write TensorBoard events file '" + path_.string() + "': " + why);
    }
    done += static_cast<size_t>(n);
  }
  written_ += static_cast<off_t>(pending_.size());
  pending_.clear();
}

void EventWriter::close() {
  if (fd_ < 0) return;
  flush();
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) throw Error("cannot close TensorBoard events file '" + path_.string() + "': " + errno_message(errno));
}

}  // namespace retort::trainer
