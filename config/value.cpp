#include "config/value.h"

#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"

namespace retort::config::detail {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool all_of(const std::string& s, size_t from, bool (*pred)(char)) {
  if (from >= s.size()) return false;
  for (size_t i = from; i < s.size(); ++i)
    if (!pred(s[i])) return false;
  return true;
}

bool is_int_text(const std::string& s) {
  if (s.size() > 2 && s[0] == '0' && s[1] == 'x') return all_of(s, 2, is_hex);
  if (s.size() > 2 && s[0] == '0' && s[1] == 'o') return all_of(s, 2, [](char c) { return c >= '0' && c <= '7'; });
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  return all_of(s, i, is_digit);
}

bool is_special_float(const std::string& s, bool* negative = nullptr, bool* nan = nullptr) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  std::string rest = s.substr(i);
  static const std::set<std::string> infs = {".inf", ".Inf", ".INF", "inf", "Inf", "INF"};
  static const std::set<std::string> nans = {".nan", ".NaN", ".NAN", "nan", "NaN", "NAN"};
  if (infs.count(rest)) {
    if (negative) *negative = (i == 1 && s[0] == '-');
    if (nan) *nan = false;
    return true;
  }
  if (i == 0 && nans.count(rest)) {
    if (nan) *nan = true;
    return true;
  }
  return false;
}

// [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
bool is_float_text(const std::string& s) {
  size_t i = 0, n = s.size();
  if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < n && is_digit(s[i])) ++i, ++int_digits;
  if (i < n && s[i] == '.') {
    ++i;
    while (i < n && is_digit(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < n && is_digit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == n;
}

// PyYAML (YAML 1.1) reads these as booleans: quote them so the output means the same there.
bool is_yaml11_bool(const std::string& s) {
  std::string l;
  for (char c : s) l += static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  return l == "yes" || l == "no" || l == "on" || l == "off";
}

// Characters a plain scalar may hold in what we emit; anything else is quoted. Stricter
// than YAML needs, so the output reads back the same in yaml-cpp and in PyYAML.
bool plain_char(char c) {
  return is_alnum(c) || c == '_' || c == '.' || c == '/' || c == '-' || c == '+' || c == '(' || c == ')' ||
         c == '$' || c == '@' || c == '=' || c == '~' || c == '^' || c == '<' || c == '>' || c == ';' ||
         c == ' ' || c == '%';
}

bool plain_safe(const std::string& s) {
  if (s.empty() || infer_kind(s) != Kind::String || is_yaml11_bool(s)) return false;
  char f = s[0];
  if (!(is_alnum(f) || f == '_' || f == '.' || f == '/' || f == '$' || f == '(')) return false;
  if (s.back() == ' ' || s.compare(0, 3, "...") == 0) return false;
  return std::all_of(s.begin(), s.end(), plain_char);
}

std::string quote(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\t': out += "\\t"; continue;
      case '\r': out += "\\r"; continue;
      default: break;
    }
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
      continue;
    }
    // Unicode line breaks (NEL, LS, PS) and BOM would be folded or dropped by a reader if
    // written raw; yaml-cpp also mis-decodes \N, so use \u escapes.
    unsigned char c1 = i + 1 < s.size() ? static_cast<unsigned char>(s[i + 1]) : 0;
    unsigned char c2 = i + 2 < s.size() ? static_cast<unsigned char>(s[i + 2]) : 0;
    if (c == 0xC2 && c1 == 0x85) {
      out += "\\u0085";
      i += 1;
      continue;
    }
    if (c == 0xE2 && c1 == 0x80 && (c2 == 0xA8 || c2 == 0xA9)) {
      out += c2 == 0xA8 ? "\\u2028" : "\\u2029";
      i += 2;
      continue;
    }
    if (c == 0xEF && c1 == 0xBB && c2 == 0xBF) {
      out += "\\uFEFF";
      i += 2;
      continue;
    }
    out += static_cast<char>(c);
  }
  out += '"';
  return out;
}

std::string scalar_text(const Value& v) {
  if (v.is_null()) return "null";
  if (kind_of(v) == Kind::String) return emit_string(v.text);
  return v.text;
}

bool is_inline(const Value& v) {
  return v.is_null() || v.is_scalar() || (v.is_map() && v.map.empty()) || (v.is_list() && v.list.empty());
}

std::string inline_text(const Value& v) {
  if (v.is_map()) return "{}";
  if (v.is_list()) return "[]";
  return scalar_text(v);
}

void emit_block(const Value& v, size_t indent, std::string& out) {
  const std::string pad(indent, ' ');
  if (v.is_map()) {
    for (const auto& [key, child] : v.map) {
      out += pad + emit_string(key) + ":";
      if (is_inline(child)) {
        out += " " + inline_text(child) + "\n";
      } else {
        out += "\n";
        emit_block(child, indent + 2, out);
      }
    }
  } else {
    for (const auto& child : v.list) {
      if (is_inline(child)) {
        out += pad + "- " + inline_text(child) + "\n";
      } else {
        // Compact form: the first line of the nested block shares the "- " line.
        std::string sub;
        emit_block(child, indent + 2, sub);
        out += pad + "- " + sub.substr(indent + 2);
      }
    }
  }
}

std::string diff(const Value& a, const Value& b, const std::string& path) {
  const std::string here = path.empty() ? "<root>" : path;
  if (a.type != b.type) return here;
  if (a.is_null()) return "";
  if (a.is_scalar()) return (kind_of(a) == kind_of(b) && a.text == b.text) ? "" : here;
  if (a.is_list()) {
    size_t n = std::min(a.list.size(), b.list.size());
    for (size_t i = 0; i < n; ++i) {
      std::string d = diff(a.list[i], b.list[i], path + "[" + std::to_string(i) + "]");
      if (!d.empty()) return d;
    }
    if (a.list.size() != b.list.size()) return path + "[" + std::to_string(n) + "]";
    return "";
  }
  for (const auto& [key, child] : a.map) {
    const Value* other = b.find(key);
    if (!other) return join_key(path, key);
    std::string d = diff(child, *other, join_key(path, key));
    if (!d.empty()) return d;
  }
  for (const auto& [key, child] : b.map)
    if (!a.find(key)) return join_key(path, key);
  for (size_t i = 0; i < a.map.size(); ++i)  // same keys, different order
    if (a.map[i].first != b.map[i].first) return join_key(path, a.map[i].first);
  return "";
}

// --- loading ---------------------------------------------------------------------------

std::string where(const std::string& origin, int line, int column) {
  std::string s = "'" + origin + "'";
  if (line >= 0) s += " at line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1);
  return s;
}

// Length of the UTF-8 sequence starting at s[i], 0 when it is not valid (truncated,
// overlong, surrogate, beyond U+10FFFF).
size_t utf8_length(const std::string& s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t len = 0;
  uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
  else return 0;
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
    return 0;
  return len;
}

// Rejects what yaml-cpp would silently mangle: invalid UTF-8 (it substitutes) and control
// characters (YAML forbids them; NULs make yaml-cpp guess UTF-16/32).
void check_text(const std::string& text, const std::string& origin) {
  int line = 0, column = 0;
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f)
      throw ConfigError("invalid character 0x" + hex64(c).substr(14) + " in " + where(origin, line, column));
    size_t len = utf8_length(text, i);
    if (len == 0) throw ConfigError("invalid UTF-8 in " + where(origin, line, column));
    if (c == '\n') ++line, column = 0;
    else ++column;
    i += len;
  }
}

// Builds a Value straight from yaml-cpp's parser events, so that limits apply while
// parsing: nesting deeper than kMaxDepth stops yaml-cpp's recursion at once, aliases are
// copied against the node budget, an alias inside its own anchor is refused.
// (YAML::LoadAll is not used: it loops forever on a stray ',', yaml-cpp issue #1040.)
class Builder : public YAML::EventHandler {
 public:
  explicit Builder(const std::string& origin) : origin_(origin) {}

  int documents() const { return documents_; }
  bool stuck() const { return documents_ > 1 && starts_[0] == starts_[1]; }
  const YAML::Mark& second_start() const { return second_mark_; }
  Value take_root() { return std::move(root_); }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents_ < 2) starts_[documents_] = {mark.line, mark.column};
    if (documents_ == 1) second_mark_ = mark;
    ++documents_;
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { add(Value::null(), mark, anchor); }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end())
      throw ConfigError("an alias refers to the anchor that contains it (a recursive alias) in " +
                        where(origin_, mark.line, mark.column));
    nodes_ += count_nodes(it->second) - 1;  // add() counts one
    add(it->second, mark, 0);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    // yaml-cpp decodes the \N escape to a lone 0x85 byte; keep every string valid UTF-8 so
    // that what we emit reads back.
    if (!valid_utf8(value))
      throw ConfigError("string is not valid UTF-8 (write U+0085 as \\u0085, not \\N) in " +
                        where(origin_, mark.line, mark.column));
    add(tag == "!" || tag == "tag:yaml.org,2002:str" ? Value::string(value) : Value::plain(value), mark, anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(Value::make_list(), mark, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(Value::make_map(), mark, anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    Value value;
    YAML::anchor_t anchor = 0;
    YAML::Mark mark;
    bool has_key = false;
    std::string key;
  };

  void open(Value v, const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (static_cast<int>(stack_.size()) >= kMaxDepth)
      throw ConfigError("nesting deeper than " + std::to_string(kMaxDepth) + " levels in " +
                        where(origin_, mark.line, mark.column));
    Frame f;
    f.value = std::move(v);
    f.anchor = anchor;
    f.mark = mark;
    stack_.push_back(std::move(f));
  }

  void close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    add(std::move(f.value), f.mark, f.anchor);
  }

  void add(Value v, const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (++nodes_ > kMaxNodes)
      throw ConfigError("config in '" + origin_ + "' is too large: more than " + std::to_string(kMaxNodes) +
                        " values (aliases expanded)");
    if (anchor) anchors_[anchor] = v;
    if (stack_.empty()) {
      root_ = std::move(v);
      return;
    }
    Frame& top = stack_.back();
    if (top.value.is_list()) {
      top.value.list.push_back(std::move(v));
    } else if (!top.has_key) {
      if (!v.is_scalar() || v.text.empty())
        throw ConfigError("map keys must be non-empty scalars, in " + where(origin_, mark.line, mark.column));
      if (top.value.find(v.text))
        throw ConfigError("duplicate key '" + v.text + "' in " + where(origin_, mark.line, mark.column));
      top.key = std::move(v.text);
      top.has_key = true;
    } else {
      top.value.map.emplace_back(std::move(top.key), std::move(v));
      top.has_key = false;
    }
  }

  const std::string& origin_;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, Value> anchors_;
  Value root_;
  size_t nodes_ = 0;
  int documents_ = 0;
  std::pair<int, int> starts_[2];
  YAML::Mark second_mark_;
};

struct FromYaml {
  const std::string& origin;
  size_t nodes = 0;

  Value convert(const YAML::Node& node, int level) {
    if (level >= kMaxDepth && (node.IsMap() || node.IsSequence()))
      throw ConfigError("nesting deeper than " + std::to_string(kMaxDepth) + " levels (or a recursive alias) in " +
                        where(origin, node.Mark().line, node.Mark().column));
    if (++nodes > kMaxNodes)
      throw ConfigError("config in '" + origin + "' is too large: more than " + std::to_string(kMaxNodes) +
                        " values (aliases expanded)");
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return Value::null();
      case YAML::NodeType::Scalar: {
        const std::string& tag = node.Tag();
        const std::string& text = node.Scalar();
        check_utf8_value(text, node);
        if (tag == "!" || tag == "tag:yaml.org,2002:str" || (text.empty() && tag != "?")) return Value::string(text);
        return Value::plain(text);
      }
      case YAML::NodeType::Sequence: {
        Value out = Value::make_list();
        for (const auto& child : node) out.list.push_back(convert(child, level + 1));
        return out;
      }
      case YAML::NodeType::Map: {
        Value out = Value::make_map();
        for (auto it = node.begin(); it != node.end(); ++it) {
          // Copies: yaml-cpp's iterator hands out a proxy that dies with the expression.
          const YAML::Node key = it->first;
          const YAML::Node value = it->second;
          if (!key.IsScalar() || key.Scalar().empty())
            throw ConfigError("map keys must be non-empty scalars, in " +
                              where(origin, key.Mark().line, key.Mark().column));
          check_utf8_value(key.Scalar(), key);
          if (out.find(key.Scalar()))
            throw ConfigError("duplicate key '" + key.Scalar() + "' in " +
                              where(origin, key.Mark().line, key.Mark().column));
          out.map.emplace_back(key.Scalar(), convert(value, level + 1));
        }
        return out;
      }
    }
    return Value::null();
  }

  // yaml-cpp decodes the \N escape to a lone 0x85 byte; keep every string valid UTF-8 so
  // that what we emit reads back.
  void check_utf8_value(const std::string& text, const YAML::Node& node) {
    if (!valid_utf8(text))
      throw ConfigError("string is not valid UTF-8 (write U+0085 as \\u0085, not \\N) in " +
                        where(origin, node.Mark().line, node.Mark().column));
  }
};

}  // namespace

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    size_t len = utf8_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// --- Value -------------------------------------------------------------------------------

Value Value::plain(std::string text) {
  Value v;
  v.type = Type::Scalar;
  v.text = std::move(text);
  if (infer_kind(v.text) == Kind::Null) return Value::null();
  return v;
}

Value Value::string(std::string text) {
  Value v;
  v.type = Type::Scalar;
  v.text = std::move(text);
  v.quoted = true;
  return v;
}

Value Value::make_map() {
  Value v;
  v.type = Type::Map;
  return v;
}

Value Value::make_list() {
  Value v;
  v.type = Type::List;
  return v;
}

const Value* Value::find(const std::string& key) const {
  for (const auto& kv : map)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

Value* Value::find(const std::string& key) {
  for (auto& kv : map)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

Value& Value::set(const std::string& key, Value value) {
  if (Value* existing = find(key)) {
    *existing = std::move(value);
    return *existing;
  }
  map.emplace_back(key, std::move(value));
  return map.back().second;
}

bool Value::erase(const std::string& key) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (it->first == key) {
      map.erase(it);
      return true;
    }
  }
  return false;
}

// --- kinds -------------------------------------------------------------------------------

Kind infer_kind(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return Kind::Null;
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE") return Kind::Bool;
  if (is_int_text(s)) return Kind::Int;
  if (is_float_text(s) || is_special_float(s)) return Kind::Float;
  return Kind::String;
}

Kind kind_of(const Value& v) {
  switch (v.type) {
    case Value::Type::Null: return Kind::Null;
    case Value::Type::Map: return Kind::Map;
    case Value::Type::List: return Kind::List;
    case Value::Type::Scalar: return v.quoted ? Kind::String : infer_kind(v.text);
  }
  return Kind::Null;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Null: return "null";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "string";
    case Kind::Map: return "map";
    case Kind::List: return "list";
  }
  return "?";
}

bool parse_int(const std::string& s, int64_t& out) {
  if (!is_int_text(s)) return false;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    uint64_t u = 0;
    auto r = std::from_chars(s.data() + 2, s.data() + s.size(), u, s[1] == 'x' ? 16 : 8);
    if (r.ec != std::errc() || u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    out = static_cast<int64_t>(u);
    return true;
  }
  const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
  auto r = std::from_chars(begin, s.data() + s.size(), out, 10);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool parse_float(const std::string& s, double& out) {
  bool negative = false, nan = false;
  if (is_special_float(s, &negative, &nan)) {
    out = nan ? std::numeric_limits<double>::quiet_NaN()
              : (negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity());
    return true;
  }
  if (is_int_text(s) && s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    int64_t i = 0;
    if (!parse_int(s, i)) return false;
    out = static_cast<double>(i);
    return true;
  }
  if (!is_float_text(s) && !is_int_text(s)) return false;
  const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
  auto r = std::from_chars(begin, s.data() + s.size(), out, std::chars_format::general);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::string describe_value(const Value& v) {
  switch (v.type) {
    case Value::Type::Null: return "null";
    case Value::Type::Map: return "a map";
    case Value::Type::List: return "a list";
    case Value::Type::Scalar: break;
  }
  std::string text = v.text.size() > 60 ? v.text.substr(0, 57) + "..." : v.text;
  return "'" + text + "' (" + kind_name(v) + ")";
}

bool equal(const Value& a, const Value& b) { return diff(a, b, "").empty(); }

std::string first_difference(const Value& a, const Value& b) { return diff(a, b, ""); }

// --- emitting ----------------------------------------------------------------------------

std::string emit_string(const std::string& s) { return plain_safe(s) ? s : quote(s); }

std::string emit(const Value& v) {
  if (is_inline(v)) return inline_text(v) + "\n";
  std::string out;
  emit_block(v, 0, out);
  return out;
}

std::string flow(const Value& v) {
  if (v.is_map()) {
    std::string out = "{";
    for (size_t i = 0; i < v.map.size(); ++i)
      out += (i ? ", " : "") + emit_string(v.map[i].first) + ": " + flow(v.map[i].second);
    return out + "}";
  }
  if (v.is_list()) {
    std::string out = "[";
    for (size_t i = 0; i < v.list.size(); ++i) out += (i ? ", " : "") + flow(v.list[i]);
    return out + "]";
  }
  return scalar_text(v);
}

int depth(const Value& v) {
  if (!v.is_map() && !v.is_list()) return 0;
  int d = 0;
  for (const auto& kv : v.map) d = std::max(d, depth(kv.second));
  for (const auto& c : v.list) d = std::max(d, depth(c));
  return d + 1;
}

size_t count_nodes(const Value& v) {
  size_t n = 1;
  for (const auto& kv : v.map) n += count_nodes(kv.second);
  for (const auto& c : v.list) n += count_nodes(c);
  return n;
}

// --- loading -----------------------------------------------------------------------------

Value load_yaml_text(const std::string& text, const std::string& origin) {
  check_text(text, origin);
  std::istringstream in(text);
  Builder builder(origin);
  try {
    YAML::Parser parser(in);
    // A second document is enough to refuse the text; never loop further.
    while (builder.documents() < 2 && parser.HandleNextDocument(builder)) {
    }
  } catch (const YAML::ParserException& e) {
    throw ConfigError("invalid YAML in " + where(origin, e.mark.line, e.mark.column) + ": " + e.msg);
  } catch (const YAML::Exception& e) {
    throw ConfigError("invalid YAML in '" + origin + "': " + e.msg);
  }
  if (builder.stuck())  // yaml-cpp made no progress: it cannot read what is there
    throw ConfigError("invalid YAML in " + where(origin, builder.second_start().line, builder.second_start().column) +
                      ": unexpected character");
  if (builder.documents() > 1)
    throw ConfigError("'" + origin + "' holds more than one YAML document (a second starts at line " +
                      std::to_string(builder.second_start().line + 1) + "); a config is a single document");
  Value v = builder.take_root();
  if (v.is_null()) return Value::make_map();
  if (!v.is_map())
    throw ConfigError("'" + origin + "' must hold a map of keys at the top, not " + describe_value(v));
  return v;
}

Value load_yaml_file(const std::filesystem::path& path, std::string* raw_text) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw ConfigError("config file not found: '" + path.string() + "'");
  if (std::filesystem::is_directory(path, ec))
    throw ConfigError("config file '" + path.string() + "' is a directory, expected a YAML file");
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    throw ConfigError(std::string("cannot read config file: ") + e.what());
  }
  if (raw_text) *raw_text = text;
  return load_yaml_text(text, path.string());
}

Value from_yaml(const YAML::Node& node, const std::string& origin) {
  try {
    FromYaml conv{origin};
    return conv.convert(node, 0);
  } catch (const YAML::Exception& e) {
    throw ConfigError("invalid YAML node in '" + origin + "': " + e.msg);
  }
}

YAML::Node to_yaml(const Value& v) {
  switch (v.type) {
    case Value::Type::Null: return YAML::Node(YAML::NodeType::Null);
    case Value::Type::Scalar: {
      YAML::Node n(v.text);
      if (v.quoted && infer_kind(v.text) != Kind::String) n.SetTag("!");
      return n;
    }
    case Value::Type::List: {
      YAML::Node n(YAML::NodeType::Sequence);
      for (const auto& c : v.list) n.push_back(to_yaml(c));
      return n;
    }
    case Value::Type::Map: {
      YAML::Node n(YAML::NodeType::Map);
      for (const auto& [key, child] : v.map) n.force_insert(key, to_yaml(child));
      return n;
    }
  }
  return YAML::Node();
}

// --- tree helpers ------------------------------------------------------------------------

void merge_into(Value& dst, const Value& src) {
  if (!dst.is_map() || !src.is_map()) {
    dst = src;
    return;
  }
  for (const auto& [key, child] : src.map) {
    Value* existing = dst.find(key);
    if (existing && existing->is_map() && child.is_map()) merge_into(*existing, child);
    else dst.set(key, child);
  }
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string::npos ? std::string::npos : pos - start));
    if (pos == std::string::npos) break;
    start = pos + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, char sep, size_t begin, size_t end) {
  std::string out;
  end = std::min(end, parts.size());
  for (size_t i = begin; i < end; ++i) {
    if (i > begin) out += sep;
    out += parts[i];
  }
  return out;
}

std::string join_key(const std::string& base, const std::string& key) {
  return base.empty() ? key : base + "." + key;
}

void collect_paths(const Value& v, const std::string& prefix, std::vector<std::string>& out) {
  if (v.is_map()) {
    for (const auto& [key, child] : v.map) {
      std::string p = join_key(prefix, key);
      out.push_back(p);
      collect_paths(child, p, out);
    }
  } else if (v.is_list()) {
    for (size_t i = 0; i < v.list.size(); ++i) {
      std::string p = join_key(prefix, std::to_string(i));
      out.push_back(p);
      collect_paths(v.list[i], p, out);
    }
  }
}

size_t edit_distance(const std::string& a, const std::string& b) {
  // Optimal string alignment: insertions, deletions, substitutions and transpositions of
  // neighbours ("fp61" -> "fp16") each cost 1.
  const size_t n = a.size(), m = b.size();
  std::vector<size_t> prev2(m + 1), prev(m + 1), row(m + 1);
  for (size_t j = 0; j <= m; ++j) prev[j] = j;
  for (size_t i = 1; i <= n; ++i) {
    row[0] = i;
    for (size_t j = 1; j <= m; ++j) {
      row[j] = std::min({prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) row[j] = std::min(row[j], prev2[j - 2] + 1);
    }
    std::swap(prev2, prev);
    std::swap(prev, row);
  }
  return prev[m];
}

}  // namespace retort::config::detail
