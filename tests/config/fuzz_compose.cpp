// libFuzzer target: the YAML loader, composition (defaults lists over a small fixed group
// tree), overrides, the resolver and the Reader. The input is a recipe; lines after a
// "%%" line are overrides. Only ConfigError may come out.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/value.h"
#include "core/fs.h"

namespace {

using namespace retort;
using namespace retort::config;
namespace fs = std::filesystem;

[[noreturn]] void fail(const char* what) {
  __builtin_printf("invariant broken: %s\n", what);
  std::abort();
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

fs::path g_root;

void cleanup() {
  std::error_code ec;
  if (!g_root.empty()) retort::remove_tree(g_root, ec);
}

// The group tree every input composes against.
const fs::path& fixture() {
  if (!g_root.empty()) return g_root;
  std::string tmpl = (fs::temp_directory_path() / "retort-fuzz-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) fail("mkdtemp");
  g_root = tmpl;
  atexit(cleanup);
  const fs::path r = g_root / "recipes";
  write(r / "model/small.yaml", "width: 32\ndepth: 2\nname: small_${.width}\n");
  write(r / "model/large.yaml", "defaults:\n  - act: relu\n  - _self_\nwidth: 128\ndepth: ${.width}\n");
  write(r / "model/act/relu.yaml", "kind: relu\n");
  write(r / "model/act/gelu.yaml", "# @package _global_\nact_global: gelu\n");
  write(r / "optim/sgd.yaml", "name: sgd\nlr: 0.1\nmomentum: ${env:RETORT_FUZZ_M,0.9}\n");
  write(r / "optim/adamw.yaml", "defaults:\n  - base\nname: adamw\n");
  write(r / "optim/base.yaml", "lr: 1e-3\nbetas: [0.9, 0.999]\n");
  write(r / "base.yaml", "defaults:\n  - model: small\ntrainer: {max_epochs: 3}\n");
  write(r / "loop.yaml", "defaults:\n  - fuzz/recipe\n");
  return g_root;
}

struct Trainer {
  int64_t max_epochs = 1;
  double lr = 0.1;
  std::string name = "x";
  std::vector<int64_t> widths;
  std::optional<bool> amp;
  YAML::Node extra;
  static void declare(Fields<Trainer>& f) {
    f.add("max_epochs", &Trainer::max_epochs, "epochs").min(1).max(1000);
    f.add("lr", &Trainer::lr, "learning rate").greater_than(0);
    f.add("name", &Trainer::name, "name").one_of({"a", "b"});
    f.add("widths", &Trainer::widths, "widths").min(1);
    f.add("amp", &Trainer::amp, "amp");
    f.add("extra", &Trainer::extra, "free");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string recipe = input;
  std::vector<std::string> overrides;
  size_t split = input.find("\n%%\n");
  if (split != std::string::npos) {
    recipe = input.substr(0, split);
    overrides = detail::split(input.substr(split + 4), '\n');
    if (overrides.size() > 8) overrides.resize(8);
  }

  // The loader alone, with the round trip.
  try {
    YAML::Node n = parse(recipe, "fuzz");
    std::string text = emit(n);
    YAML::Node back = parse(text, "emitted");
    if (!first_difference(n, back).empty()) fail("parse/emit round trip changed the tree");
    if (hash(n) != hash(back)) fail("hash differs after a round trip");
  } catch (const ConfigError&) {
  }

  // Composition of the input as a recipe inside the fixture tree.
  const fs::path path = fixture() / "recipes/fuzz/recipe.yaml";
  write(path, recipe);
  try {
    Composed c = compose({path, overrides, {}});
    std::string text = emit(c.config);
    YAML::Node back = parse(text, "emitted");
    if (!first_difference(c.config, back).empty()) fail("composed config does not round-trip");
    Reader reader(c.config);
    reader.section<Trainer>("trainer");
    reader.allow_extra("model");
    try {
      reader.finish();
    } catch (const ConfigError&) {
    }
  } catch (const ConfigError&) {
  }
  try {
    list_groups(path);
  } catch (const ConfigError&) {
  }
  return 0;
}
