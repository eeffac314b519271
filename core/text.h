#pragma once
/// Lists and numbers in messages, written one way everywhere.
///   join({"a", "b"})                                  // "a, b"
///   join(shape, [](int64_t d) { return std::to_string(d); }, "x")   // "3x28x28"
///   format_number(0.001)                              // "0.001"
#include <string>
#include <type_traits>
#include <vector>

namespace retort {

/// The items separated by `separator`.
std::string join(const std::vector<std::string>& items, const std::string& separator = ", ");

/// Each item as `to_text` writes it, separated by `separator`.
template <class T, class ToText, class = std::enable_if_t<std::is_invocable_v<ToText, const T&>>>
std::string join(const std::vector<T>& items, ToText&& to_text, const std::string& separator = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? separator : std::string()) + to_text(items[i]);
  return out;
}

/// A number as people read it: up to 6 significant digits, no trailing zeros ("0.001",
/// "1e+06", "nan").
std::string format_number(double v);

}  // namespace retort
