#pragma once
/// Command-line overrides, Hydra's grammar:
///   a.b=1        change an existing key          model=cnn_large    pick another group option
///   +a.b=1       add a key that must not exist   +model=cnn_small   add a group to the defaults
///   ++a.b=1      add or change                   ~model             drop a group
///   ~a.b         delete (~a.b=1: only if equal)  a=1,2              a sweep (expand_sweep only)
/// Values: 1, 1e-3, .5, inf, true, null, 'quoted', "quoted", unquoted text, ${interp},
/// [1, 2], {x: 1, y: [a, b]}, nested; `\,` `\[` ... escape one character.
///
///   config::Override o = config::parse_override("+trainer.tags=[a,b]");
///   config::apply_override(tree, o);   // tree is a detail::Value
#include <string>
#include <vector>

#include "config/value.h"

namespace retort::config {

struct Override {
  enum class Op { Set, Add, ForceAdd, Delete };
  Op op = Op::Set;
  std::string text;          ///< the override as given
  std::string key;           ///< "trainer.max_epochs", "model", "model/cnn", "model@teacher"
  bool has_value = false;    ///< false only for `~key`
  detail::Value value;       ///< the (first) parsed value
  std::vector<detail::Value> values;    ///< every value of a comma list (one when no sweep)
  std::vector<std::string> value_texts; ///< their raw texts, as written (for expand_sweep)

  bool is_sweep() const { return values.size() > 1; }
  /// '/' or '@' in the key: certainly a config group (a bare name may be one too).
  bool names_group() const;
  /// "", "+", "++" or "~".
  const char* prefix() const;
};

/// Parses one override; ConfigError quotes the text and the column of the problem.
Override parse_override(const std::string& text);

/// Applies a config-key override (not a group choice) to a composed tree. Errors say how
/// to fix the override (e.g. use +key=... to add a key).
void apply_override(detail::Value& root, const Override& o);

}  // namespace retort::config
