#pragma once
/// The `retort` subcommands. Each takes its arguments after the subcommand name and
/// returns the process exit code; errors are thrown as retort::Error (exit code inside).
#include <string>
#include <vector>

namespace retort::launch {
class World;
}

namespace retort::cli {

using Args = std::vector<std::string>;

int train(launch::World& world, const Args& args);
int eval(launch::World& world, const Args& args);
int export_weights(launch::World& world, const Args& args);

/// Usage text of the program and of each subcommand.
std::string usage();

}  // namespace retort::cli
