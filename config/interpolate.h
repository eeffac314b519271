#pragma once
/// Interpolation, resolved once after composition and overrides:
///   ${a.b}                 absolute key path (list elements by index: ${a.list.0})
///   ${.sibling} ${..x}     relative to the map holding the string; each extra dot goes up
///   ${env:VAR} ${env:VAR,default}   environment (value typed like a plain YAML scalar)
///   ${now:%Y-%m-%d}        strftime of one timestamp per compose call
///   \${x}                  a literal ${x}
/// A string that is exactly one interpolation takes the target's value and type; mixed
/// text ("run_${a}_${b}") gives a string. Nothing is executed: no other resolvers exist.
///
///   detail::resolve(tree, std::time(nullptr));   // ConfigError names the key chain
#include <ctime>

#include "config/value.h"

namespace retort::config::detail {

/// Resolves every interpolation in `root` in place. Cycles, missing targets, unknown
/// resolvers and unset environment variables throw ConfigError naming the key chain.
void resolve(Value& root, std::time_t now);

}  // namespace retort::config::detail
