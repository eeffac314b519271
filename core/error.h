#pragma once
/// Error types shared by every folder, each carrying the process exit code the CLI uses.
///   throw retort::DataError("cannot open '" + path + "': ...");
/// Exit codes: 0 success, 1 anything else, 2 usage or config, 3 data, 4 checkpoint, 5 stopped
/// by a signal before the end (a checkpoint written: trainer.resume=auto continues).
#include <stdexcept>
#include <string>

namespace retort {

enum ExitCode : int { kExitOk = 0, kExitOther = 1, kExitUsage = 2, kExitData = 3, kExitCheckpoint = 4, kExitStopped = 5 };

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, int exit_code = kExitOther)
      : std::runtime_error(what), exit_code_(exit_code) {}
  int exit_code() const noexcept { return exit_code_; }

 private:
  int exit_code_;
};

/// Bad command line (unknown subcommand, missing argument).
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what, kExitUsage) {}
};

/// Bad configuration: unknown key, wrong type, out-of-range value, malformed override.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& what) : Error(what, kExitUsage) {}
};

/// Missing, truncated or inconsistent data files.
class DataError : public Error {
 public:
  explicit DataError(const std::string& what) : Error(what, kExitData) {}
};

/// Missing, corrupt, truncated or incompatible checkpoint.
class CheckpointError : public Error {
 public:
  explicit CheckpointError(const std::string& what) : Error(what, kExitCheckpoint) {}
};

/// A collective failed, timed out, or a peer rank died.
class CommError : public Error {
 public:
  explicit CommError(const std::string& what) : Error(what, kExitOther) {}
};

}  // namespace retort
