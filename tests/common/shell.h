#pragma once
// The one way the tests run a program through the shell (include as "tests/common/shell.h").
//   auto r = retort::test::run_shell("node --version");   // r.code 0, r.out "v20...\n"
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace retort::test {

struct ShellResult {
  int code = -1;    ///< the exit code; -1 when a signal ended the program
  std::string out;  ///< stdout and stderr together
};

/// Runs `command` with /bin/sh, stderr into stdout, and waits for it.
inline ShellResult run_shell(const std::string& command) {
  ShellResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.out.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace retort::test
