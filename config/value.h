#pragma once
/// The config tree as config/ handles it internally: an ordered map / list / scalar value
/// with plain C++ copy semantics (yaml-cpp nodes alias each other on assignment, which
/// makes merging and in-place interpolation error-prone). Converted from and to
/// YAML::Node at the API boundary.
///
///   detail::Value v = detail::load_yaml_text("a: {b: 1}", "<text>");
///   const detail::Value* b = v.find("a")->find("b");   // int 1
///   std::string text = detail::emit(v);                 // "a:\n  b: 1\n"
#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace retort::config::detail {

/// Nesting limit for every tree config/ builds or reads (files, override values,
/// interpolation results). Deeper input is rejected with a ConfigError, which keeps all
/// the recursive walks (ours and yaml-cpp's) far from the stack limit.
constexpr int kMaxDepth = 64;
/// Node budget (after YAML aliases and interpolations are expanded): stops alias bombs.
constexpr size_t kMaxNodes = 200000;
/// Length limit of one string built by interpolation.
constexpr size_t kMaxStringBytes = size_t{1} << 20;

/// What a scalar means. Plain scalars get their kind from the text (YAML 1.2 core
/// schema plus inf/nan); quoted scalars are always strings.
enum class Kind { Null, Bool, Int, Float, String, Map, List };

struct Value {
  enum class Type { Null, Scalar, Map, List };
  Type type = Type::Null;
  std::string text;     ///< scalar text
  bool quoted = false;  ///< scalar was quoted: a string whatever it looks like
  std::vector<std::pair<std::string, Value>> map;  ///< insertion order
  std::vector<Value> list;

  static Value null() { return Value{}; }
  static Value plain(std::string text);   ///< kind inferred from the text
  static Value string(std::string text);  ///< always a string
  static Value make_map();
  static Value make_list();

  bool is_null() const { return type == Type::Null; }
  bool is_scalar() const { return type == Type::Scalar; }
  bool is_map() const { return type == Type::Map; }
  bool is_list() const { return type == Type::List; }

  const Value* find(const std::string& key) const;
  Value* find(const std::string& key);
  /// Replaces the value of `key`, or appends it at the end.
  Value& set(const std::string& key, Value value);
  bool erase(const std::string& key);
};

/// Kind of a plain (unquoted) scalar text.
Kind infer_kind(const std::string& text);
Kind kind_of(const Value& v);
/// "null", "bool", "int", "float", "string", "map", "list".
const char* kind_name(Kind k);
inline const char* kind_name(const Value& v) { return kind_name(kind_of(v)); }

/// Parses an int scalar (decimal, 0x, 0o). False when it is out of int64 range.
bool parse_int(const std::string& text, int64_t& out);
/// Parses a float (or int) scalar, including inf / .inf / nan forms.
bool parse_float(const std::string& text, double& out);

/// The value as error messages show it: 'abc' (string), 3 (int), null, a map, a list.
std::string describe_value(const Value& v);

/// Semantic equality: same kinds, same texts, same keys in the same order.
bool equal(const Value& a, const Value& b);
/// First key path where a and b differ ("" when equal, "<root>" when the roots differ).
std::string first_difference(const Value& a, const Value& b);

/// Deterministic block YAML; load_yaml_text(emit(v)) is equal to v.
std::string emit(const Value& v);
/// One-line flow YAML ({a: 1, b: [x, y]}), for defaults in --help and messages.
std::string flow(const Value& v);
/// A string as a YAML scalar: plain when that reads back as the same string, else quoted.
std::string emit_string(const std::string& s);

/// Containers on the deepest path: a scalar is 0, {} and {a: 1} are 1, {a: [1]} is 2.
/// Every tree config/ accepts has a depth of at most kMaxDepth.
int depth(const Value& v);
size_t count_nodes(const Value& v);

/// Parses YAML text (one document; a map or empty). Rejects invalid UTF-8, control
/// characters, nesting deeper than kMaxDepth and alias bombs before or while calling
/// yaml-cpp. Throws ConfigError naming `origin` and the line/column.
Value load_yaml_text(const std::string& text, const std::string& origin);
/// Reads and parses a file; ConfigError names the file when it is missing or invalid.
Value load_yaml_file(const std::filesystem::path& path, std::string* raw_text = nullptr);

/// Conversion from yaml-cpp (keys must be non-empty scalars; depth and size limits apply).
Value from_yaml(const YAML::Node& node, const std::string& origin);
/// Conversion to yaml-cpp; quoted scalars that look like numbers get the "!" tag.
YAML::Node to_yaml(const Value& v);

/// OmegaConf-style merge: maps merge key by key (existing keys keep their place, new
/// ones are appended), anything else replaces.
void merge_into(Value& dst, const Value& src);

/// "a.b" -> {"a", "b"}; empty segments are kept (callers validate).
std::vector<std::string> split(const std::string& s, char sep);
std::string join(const std::vector<std::string>& parts, char sep, size_t begin = 0, size_t end = std::string::npos);
/// "a" + "b" -> "a.b"; "" + "b" -> "b".
std::string join_key(const std::string& base, const std::string& key);

/// Every key path in the tree (maps only; list elements as "a.0"), depth first.
void collect_paths(const Value& v, const std::string& prefix, std::vector<std::string>& out);

/// True when `s` is well-formed UTF-8 (no overlongs, surrogates or truncated sequences).
bool valid_utf8(const std::string& s);

/// Edit distance (bytes; a swap of neighbours counts as one edit).
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace retort::config::detail
