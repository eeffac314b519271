// libFuzzer target: the override parser, sweep expansion, apply_override and interpolation
// on a fixed tree. Only ConfigError may come out; any other exception, a crash, a leak or
// undefined behaviour fails the run. Each input line is one override.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/interpolate.h"
#include "config/override.h"
#include "config/value.h"

namespace {

using namespace retort;
using namespace retort::config;

[[noreturn]] void fail(const char* what) {
  __builtin_printf("invariant broken: %s\n", what);
  std::abort();
}

const char* kTree =
    "trainer:\n  max_epochs: 10\n  lr: 1e-3\n  tags: [a, b]\n  name: run_${trainer.max_epochs}\n"
    "model:\n  width: 64\n  layers: ['${model.width}', 2]\n  inner: {x: 1, y: '${..width}'}\n"
    "paths:\n  home: ${env:HOME,/root}\n  stamp: ${now:%Y}\n  lit: \\${x}\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines = detail::split(input, '\n');
  if (lines.size() > 16) lines.resize(16);

  for (const auto& line : lines) {
    try {
      Override o = parse_override(line);
      if (o.values.size() != o.value_texts.size()) fail("values and texts differ in number");
      // Each element of a sweep, written back as an override, parses to the same value.
      if (o.is_sweep()) {
        for (size_t i = 0; i < o.values.size(); ++i) {
          Override one = parse_override(std::string(o.prefix()) + o.key + "=" + o.value_texts[i]);
          if (one.is_sweep() || !detail::equal(one.value, o.values[i])) fail("sweep element does not re-parse");
        }
      }
    } catch (const ConfigError&) {
    }
  }
  try {
    expand_sweep(lines);
  } catch (const ConfigError&) {
  }
  try {
    static const detail::Value base = detail::load_yaml_text(kTree, "fuzz");
    detail::Value tree = base;
    for (const auto& line : lines) apply_override(tree, parse_override(line));
    detail::resolve(tree, 1700000000);
    if (detail::depth(tree) > detail::kMaxDepth) return 0;
    const std::string text = detail::emit(tree);
    detail::Value back = detail::load_yaml_text(text, "emitted");
    if (!detail::equal(tree, back)) fail("emit/parse round trip changed the tree");
    if (detail::emit(back) != text) fail("emit is not stable");
  } catch (const ConfigError&) {
  }
  return 0;
}
