#pragma once
/// The `retort` command line: one table of subcommands (commands(), cli/commands.cpp),
/// parsed with CLI11. Each command declares its flags and positionals on its CLI11
/// subcommand and returns what runs it with the values parsed into them; config overrides
/// (key=value, +key=value, ++key=value, ~key, group=option) are positionals, passed on
/// untouched and in order. Adding a command: its define_<name> below, one row in commands().
///   auto parsed = cli::parse_command_line({"report", "outputs/a", "--csv", "table.csv"}, std::cout);
///   if (parsed.run) return launch::run_guarded(world, [&] { return parsed.run(world); });
/// Errors are thrown as retort::Error (exit code inside), one line naming the command and
/// the flag, key or value.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace CLI {
class App;
}  // namespace CLI

namespace retort::launch {
class World;
}

namespace retort::cli {

using Args = std::vector<std::string>;

/// A command with its arguments parsed, ready to run in the process's world; returns the
/// exit code.
using CommandRun = std::function<int(launch::World&)>;

struct Command {
  const char* name;
  const char* synopsis;  ///< what follows `retort <name>` in its usage line
  const char* summary;   ///< one line, listed by `retort --help`
  /// Declares the command's positionals and flags on `app` (its help flag is there
  /// already); the function returned runs the command with the values parsed into them.
  CommandRun (*define)(CLI::App& app);
};

/// Every command, in the order `retort --help` lists them.
const std::vector<Command>& commands();

CommandRun define_train(CLI::App& app);
CommandRun define_eval(CLI::App& app);
CommandRun define_export(CLI::App& app);
CommandRun define_report(CLI::App& app);
CommandRun define_prune(CLI::App& app);
CommandRun define_quantize(CLI::App& app);
CommandRun define_tokenize(CLI::App& app);
CommandRun define_generate(CLI::App& app);
CommandRun define_cache_teacher(CLI::App& app);

/// A command line parsed: the command to run, or none when the line asked for help or the
/// version (then printed) or named no command (usage printed, exit_code kExitUsage).
struct ParsedCommandLine {
  CommandRun run;
  int exit_code = 0;  ///< when there is nothing to run
};

/// Parses `args` (the command line without the program name); help, usage and the version
/// go to `out`. `retort help [command ...]` is `retort [command ...] --help`. UsageError
/// naming the command and the unknown command, unknown flag or bad flag value.
ParsedCommandLine parse_command_line(const Args& args, std::ostream& out);

/// parse_command_line, then the command in `world`: what `retort <args>` does, with errors
/// thrown rather than printed.
int run_command_line(launch::World& world, const Args& args);

/// A command's positionals: what it reads (a recipe, run or checkpoint directories) and
/// the config overrides among them, each in the order given.
struct Positionals {
  Args inputs;
  Args overrides;
};

/// Splits `args`: an override holds '=' or starts with '+' or '~' (config/override.h),
/// anything else is an input. UsageError naming `command` unless there are `min` to `max`
/// inputs: "missing <what>" or the first input too many.
Positionals split_positionals(const Args& args, const std::string& command, const std::string& what, size_t min,
                              size_t max);

/// Declares `flag` (e.g. "--batch"), an integer of at least `min` parsed into `value`; its
/// help is `help` with the range and the default. A bad value is a UsageError
/// "<command>: <flag>: expects an integer >= <min>, got '<value>'".
void add_integer_flag(CLI::App& app, const std::string& flag, int64_t& value, int64_t min, const std::string& help);

}  // namespace retort::cli
