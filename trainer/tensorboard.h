#pragma once
/// TensorBoard event files, written without TensorFlow or protobuf: each record is a
/// tensorboard.Event message (encoded here by hand) in TFRecord framing, so
/// `tensorboard --logdir` reads the folder. Metrics writes every numeric field of its rows
/// through this; other code may write its own scalars the same way.
///   EventWriter events;
///   events.open(run_dir / "tensorboard");   // events.out.tfevents.<unix seconds>.<host>
///   events.add_scalar("train/loss", 0.42, 100, unix_seconds());
///   events.flush();                          // whole records reach the file, or none
///   events.close();
/// Each open() starts a new file (a resumed run adds one; TensorBoard merges a folder's
/// files). Records wait in memory until flush(), so a failed write never leaves half a
/// record: the file is cut back to its last whole record and retort::Error is thrown.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace retort::trainer {

/// CRC32C (Castagnoli) of n bytes, continuing from a previous crc (0 to start).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
/// The CRC32C of n bytes in the masked form that TFRecord stores after a length and a payload.
uint32_t masked_crc32c(const void* data, size_t n);
/// Seconds since the Unix epoch, the clock of an Event's wall_time.
double unix_seconds();

class EventWriter {
 public:
  EventWriter() = default;
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;
  /// Flushes and closes; an error here is dropped (call close() to see it).
  ~EventWriter();

  /// Creates `dir` when missing and a new events file in it whose first record is the
  /// file_version event. Throws retort::Error naming the folder or file that failed.
  void open(const std::filesystem::path& dir);
  bool is_open() const { return fd_ >= 0; }
  /// The events file (empty before open()).
  const std::filesystem::path& path() const { return path_; }

  /// Queues one scalar (TensorBoard stores it as a float) until the next flush().
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time);
  /// Writes every queued record to the file (the operating system's cache, as a stream's
  /// flush does).
  void flush();
  /// Flushes and closes the file; a no-op when not open.
  void close();

 private:
  void append_record(const std::string& event);

  int fd_ = -1;
  std::filesystem::path path_;
  std::string pending_;  // whole records not yet written
  off_t written_ = 0;    // bytes of whole records in the file
};

}  // namespace retort::trainer
