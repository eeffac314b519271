// retort: train, evaluate and export compressed models. See `retort --help`.
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "launch/world.h"

int main(int argc, char** argv) {
  using namespace retort;
  // The line is parsed before the World exists: help, the version and usage errors start no MPI.
  cli::ParsedCommandLine parsed;
  try {
    parsed = cli::parse_command_line(cli::Args(argv + 1, argv + argc), std::cout);
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitOther;
  }
  if (!parsed.run) return parsed.exit_code;
  // One World per process: MPI starts only when an MPI launcher started us.
  std::unique_ptr<launch::World> world;
  try {
    world = std::make_unique<launch::World>();
  } catch (const Error& e) {
    std::cerr << "retort: error: " << e.what() << "\n";
    return e.exit_code();
  }
  return launch::run_guarded(*world, [&] { return parsed.run(*world); });
}
