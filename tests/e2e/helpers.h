#pragma once
// Shared by the tests/e2e sources: the built `retort` as a user runs it.
#include <filesystem>
#include <string>

#include "tests/common/shell.h"

namespace retort::test {

/// Runs `retort args` from the source folder, with `env` (NAME=value ...) set for it.
inline ShellResult run_retort(const std::string& args, const std::string& env = "") {
  return run_shell(std::string("cd ") + RETORT_SOURCE_DIR + " && " + env + " " + RETORT_BIN + " " + args);
}

/// The image recipe the tests train, and overrides that make it a few seconds' run.
inline const std::string kRecipe = "recipes/fmnist/default.yaml";
inline const std::string kSmall = " data.subset=600 data.batch_size=64 trainer.max_steps=6 trainer.threads=1 ";

/// Debian's dataset-fashion-mnist is installed.
inline bool has_dataset() {
  return std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

}  // namespace retort::test
