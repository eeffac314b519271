// The command table, and a `retort` command line parsed with CLI11 into the command to run.
#include "cli/commands.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <map>

#include "core/error.h"
#include "core/text.h"

namespace retort::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"train", "<recipe.yaml> [key=value | +key=value | ++key=value | ~key | group=option ...] [options]",
       "train a recipe (mpirun -np N retort train ... for N ranks)", define_train},
      {"eval", "<run_dir | checkpoint> [more ...] [key=value ...]",
       "test loss and accuracy (several: each, then their ensemble, mean logits)", define_eval},
      {"export", "<run_dir | checkpoint> <out.safetensors | out.onnx>",
       "model weights for PyTorch, or an ONNX graph for ONNX Runtime and TensorRT", define_export},
      {"report", "<run_dir | checkpoint> [more ...] [key=value ...] [options]",
       "parameters, accuracy, latency and memory of runs side by side", define_report},
      {"prune", "<run_dir | checkpoint> prune.method=... [key=value ...] [options]",
       "prune a trained run into a new run directory; --scan: each layer's sensitivity", define_prune},
      {"quantize", "<run_dir | checkpoint> quant.method=dynamic|static [key=value ...]",
       "int8 post-training quantization of a trained run into a new run directory", define_quantize},
      {"tokenize", "<text file or folder> <out_dir> [options]",
       "a text corpus as token files for language models (train.tokens, val.tokens)", define_tokenize},
      {"generate", "<run_dir | checkpoint> --prompt TEXT [options]",
       "a language model's continuation of a prompt (KV cache, seeded sampling)", define_generate},
      {"cache-teacher", "<recipe.yaml> [key=value ...]",
       "a distillation recipe's teacher run once over the training text, stored in distill.cache.dir",
       define_cache_teacher},
  };
  return table;
}

namespace {

std::string synopsis_of(const std::string& command) {
  for (const auto& c : commands())
    if (command == c.name) return c.synopsis;
  return "<command> [args]";  // the program itself
}

/// CLI11's help with retort's usage line: `usage: retort <command> <synopsis>`.
class UsageFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App* app, std::string name) const override {
    return "usage: " + name + " " + synopsis_of(app->get_name()) + "\n";
  }
};

std::string command_names() {
  return join(commands(), [](const auto& c) { return std::string(c.name); });
}

std::string flag_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* option : app.get_options())
    if (option->nonpositional()) names.push_back(option->get_name());
  return join(names);
}

/// The program's options and one subcommand per command; `runs` receives what runs each.
void declare_commands(CLI::App& app, std::map<std::string, CommandRun>& runs) {
  app.formatter(std::make_shared<UsageFormatter>());
  app.set_version_flag("--version", "retort " RETORT_VERSION);
  // At most one command: after it, an argument spelled like a command (a run directory
  // named `eval`) stays that command's positional.
  app.require_subcommand(0, 1);
  // Unknown flags are kept (every command inherits this) so that refuse_leftovers can name
  // them with their command and what it accepts.
  app.allow_extras();
  for (const auto& c : commands()) {
    CLI::App* command = app.add_subcommand(c.name, c.summary);
    command->group("Commands");
    runs[c.name] = c.define(*command);
  }
  // After the commands: each would inherit it.
  app.footer("retort <command> --help (or retort help <command>): the command's arguments and flags\n"
             "exit codes: 0 ok, 1 other error, 2 usage or config error, 3 data error, 4 checkpoint error");
}

/// UsageError for what CLI11 left over: an unknown command or flag, or a positional more
/// than a command takes, named with the command.
void refuse_leftovers(const CLI::App& app) {
  const auto chosen = app.get_subcommands();
  Args left = chosen.empty() ? Args{} : chosen.front()->remaining();
  for (const auto& arg : app.remaining()) left.push_back(arg);
  if (left.empty()) return;
  const std::string& first = left.front();
  const bool flag = first.size() > 1 && first[0] == '-';
  if (chosen.empty())
    throw UsageError(flag ? "unknown option '" + first + "' (options: " + flag_names(app) + "; see retort --help)"
                          : "unknown command '" + first + "' (commands: " + command_names() + "; see retort --help)");
  const std::string command = chosen.front()->get_name();
  if (flag)
    throw UsageError(command + ": unknown option '" + first + "' (options: " + flag_names(*chosen.front()) +
                     "; see retort " + command + " --help)");
  throw UsageError(command + ": unexpected argument '" + first + "' (see retort " + command + " --help)");
}

/// `retort help [command ...]` is `retort [command ...] --help`.
Args with_help_word_as_flag(const Args& args) {
  if (args.empty() || args.front() != "help") return args;
  Args out(args.begin() + 1, args.end());
  out.push_back("--help");
  return out;
}

}  // namespace

ParsedCommandLine parse_command_line(const Args& args, std::ostream& out) {
  CLI::App app("retort " RETORT_VERSION " - distill, train, prune and export compact models", "retort");
  std::map<std::string, CommandRun> runs;
  declare_commands(app, runs);
  try {
    Args reversed = with_help_word_as_flag(args);  // CLI11 takes the arguments last first
    std::reverse(reversed.begin(), reversed.end());
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    out << app.help();  // the chosen command's, else the program's
    return {};
  } catch (const CLI::CallForVersion& e) {
    out << e.what() << "\n";
    return {};
  } catch (const CLI::ParseError& e) {
    refuse_leftovers(app);  // an unknown flag first: it may be why a value or argument is missing
    const auto chosen = app.get_subcommands();
    throw UsageError((chosen.empty() ? "" : chosen.front()->get_name() + ": ") + e.what());
  }
  refuse_leftovers(app);
  const auto chosen = app.get_subcommands();
  if (chosen.empty()) {
    out << app.help();
    return {nullptr, kExitUsage};
  }
  return {runs.at(chosen.front()->get_name()), kExitOk};
}

int run_command_line(launch::World& world, const Args& args) {
  const ParsedCommandLine parsed = parse_command_line(args, std::cout);
  return parsed.run ? parsed.run(world) : parsed.exit_code;
}

Positionals split_positionals(const Args& args, const std::string& command, const std::string& what, size_t min,
                              size_t max) {
  Positionals p;
  for (const auto& arg : args) {
    const bool is_override = arg.find('=') != std::string::npos || arg.rfind('+', 0) == 0 || arg.rfind('~', 0) == 0;
    (is_override ? p.overrides : p.inputs).push_back(arg);
  }
  if (p.inputs.size() < min) throw UsageError(command + ": missing " + what + " (see retort " + command + " --help)");
  if (p.inputs.size() > max)
    throw UsageError(command + ": unexpected argument '" + p.inputs[max] +
                     "' (overrides are key=value, +key=value, ++key=value, ~key or group=option; see retort " +
                     command + " --help)");
  return p;
}

void add_integer_flag(CLI::App& app, const std::string& flag, int64_t& value, int64_t min, const std::string& help) {
  auto at_least_min = [min](std::string& value) -> std::string {
    try {
      size_t end = 0;
      const long long v = std::stoll(value, &end);
      if (end == value.size() && v >= min) return "";
    } catch (const std::exception&) {
      // not an integer: said below
    }
    return "expects an integer >= " + std::to_string(min) + ", got '" + value + "'";
  };
  app.add_option(flag, value, help + " (>= " + std::to_string(min) + ")")
      ->check(CLI::Validator(at_least_min, ""))  // no description: the help states the range
      ->capture_default_str();
}

}  // namespace retort::cli
