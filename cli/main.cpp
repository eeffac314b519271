// retort: train, evaluate and export compressed models. See `retort --help`.
#include <iostream>

#include "cli/commands.h"
#include "cli/prune.h"
#include "cli/report.h"
#include "core/error.h"
#include "core/malloc.h"
#include "launch/world.h"
#include "trainer/cpu_allocator.h"

int main(int argc, char** argv) {
  using namespace retort;
  tune_malloc_for_training();      // see core/malloc.h: 3.5x faster CPU steps
  trainer::install_cpu_allocator();  // see trainer/cpu_allocator.h: large blocks reused
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << cli::usage();
    return args.empty() ? kExitUsage : kExitOk;
  }
  if (args[0] == "--version") {
    std::cout << "retort " << RETORT_VERSION << "\n";
    return kExitOk;
  }
  // One World per process: MPI starts only when an MPI launcher started us.
  std::unique_ptr<launch::World> world;
  try {
    world = std::make_unique<launch::World>();
  } catch (const Error& e) {
    std::cerr << "retort: error: " << e.what() << "\n";
    return e.exit_code();
  }
  const std::string command = args[0];
  const cli::Args rest(args.begin() + 1, args.end());
  return launch::run_guarded(*world, [&]() -> int {
    if (command == "train") return cli::train(*world, rest);
    if (command == "eval") return cli::eval(*world, rest);
    if (command == "export") return cli::export_weights(*world, rest);
    if (command == "report") return cli::report(*world, rest);
    if (command == "prune") return cli::prune(*world, rest);
    throw UsageError("unknown command '" + command + "' (commands: train, eval, export, report, prune; see retort --help)");
  });
}
