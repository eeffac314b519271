#include "config/override.h"

#include <algorithm>

#include "config/config.h"
#include "core/error.h"

namespace retort::config {
namespace {

using detail::Value;

bool is_space(char c) { return c == ' ' || c == '\t'; }
bool is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text), n_(text.size()) {}

  Override parse() {
    Override o;
    o.text = s_;
    if (!detail::valid_utf8(s_)) throw ConfigError("invalid override '" + s_ + "': not valid UTF-8");
    skip_ws();
    if (at('~')) {
      o.op = Override::Op::Delete;
      ++pos_;
    } else if (s_.compare(pos_, 2, "++") == 0) {
      o.op = Override::Op::ForceAdd;
      pos_ += 2;
    } else if (at('+')) {
      o.op = Override::Op::Add;
      ++pos_;
    }
    size_t key_start = pos_;
    while (pos_ < n_ && s_[pos_] != '=' && !is_space(s_[pos_])) ++pos_;
    o.key = s_.substr(key_start, pos_ - key_start);
    check_key(o.key, key_start);
    size_t after_key = pos_;
    skip_ws();
    if (pos_ == n_) {
      if (o.op == Override::Op::Delete) return o;
      std::string fix = "write " + std::string(o.prefix()) + o.key + "=VALUE to set it";
      if (o.op == Override::Op::Set) fix += ", or ~" + o.key + " to delete it";
      fail(after_key, "missing '=' after key '" + o.key + "' (" + fix + ")");
    }
    if (!at('=')) fail(pos_, "unexpected '" + std::string(1, s_[pos_]) + "' after key '" + o.key + "'");
    ++pos_;
    skip_ws();
    if (pos_ == n_) {
      // `key=` sets the empty string, as in Hydra; `~key=` deletes unconditionally.
      if (o.op != Override::Op::Delete) {
        o.has_value = true;
        o.value = Value::string("");
        o.values = {o.value};
        o.value_texts = {""};
      }
      return o;
    }
    check_sweep_function();
    o.has_value = true;
    while (true) {
      size_t begin = pos_;
      Value v = element(0, Context::Top);
      o.values.push_back(std::move(v));
      o.value_texts.push_back(trimmed(begin, pos_));
      skip_ws();
      if (pos_ == n_) break;
      if (at(',')) {
        ++pos_;
        skip_ws();
        continue;
      }
      fail(pos_, "unexpected '" + std::string(1, s_[pos_]) + "'");
    }
    if (o.op == Override::Op::Delete && o.values.size() > 1)
      fail(0, "a delete (~) takes a single value, not a comma list");
    o.value = o.values.front();
    return o;
  }

 private:
  enum class Context { Top, List, DictValue };

  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    throw ConfigError("invalid override '" + s_ + "' at column " + std::to_string(pos + 1) + ": " + msg);
  }

  bool at(char c) const { return pos_ < n_ && s_[pos_] == c; }
  void skip_ws() {
    while (pos_ < n_ && is_space(s_[pos_])) ++pos_;
  }
  /// s_[begin, end) without surrounding whitespace, but keeping a trailing space that a
  /// backslash escapes (an odd run of backslashes before it: they pair left to right).
  std::string trimmed(size_t begin, size_t end) const {
    while (begin < end && is_space(s_[begin])) ++begin;
    while (end > begin && is_space(s_[end - 1])) {
      size_t slashes = 0;
      while (end - 1 - slashes > begin && s_[end - 2 - slashes] == '\\') ++slashes;
      if (slashes % 2 == 1) break;
      --end;
    }
    return s_.substr(begin, end - begin);
  }

  // Keys: dotted config paths (a.b.c, list indices as digits) or slash group paths
  // (model/cnn), optionally with @package (model@teacher).
  void check_key(const std::string& key, size_t start) const {
    if (key.empty()) fail(start, "missing key before '='");
    size_t at_pos = key.find('@');
    if (at_pos != std::string::npos && key.find('@', at_pos + 1) != std::string::npos)
      fail(start + key.find('@', at_pos + 1), "a key takes at most one '@package'");
    std::string group = key.substr(0, at_pos);
    if (group.find('/') != std::string::npos && group.find('.') != std::string::npos)
      fail(start, "key '" + key + "' mixes '.' (config keys) and '/' (config groups)");
    size_t seg_start = 0;
    for (size_t i = 0; i <= key.size(); ++i) {
      char c = i < key.size() ? key[i] : '\0';
      bool sep = c == '.' || c == '/' || c == '@' || c == '\0';
      if (sep) {
        if (i == seg_start) {
          if (c == '\0' && i > 0) fail(start + i - 1, "key '" + key + "' ends with '" + key[i - 1] + "'");
          fail(start + i, "empty key segment in '" + key + "'");
        }
        seg_start = i + 1;
      } else if (!is_key_char(c)) {
        fail(start + i, "unexpected character '" + std::string(1, c) + "' in key '" + key + "'");
      }
    }
    if (at_pos != std::string::npos && key.find('/', at_pos) != std::string::npos)
      fail(start + key.find('/', at_pos), "the package after '@' is a dotted key, not a group path");
  }

  void check_sweep_function() const {
    static const char* names[] = {"choice(", "range(", "interval(", "glob(", "sort(", "shuffle(", "tag("};
    for (const char* name : names) {
      if (s_.compare(pos_, std::char_traits<char>::length(name), name) == 0)
        fail(pos_, std::string("sweep function '") + name + "...)' is not supported; list the values: key=a,b,c");
    }
  }

  Value element(int depth, Context ctx) {
    skip_ws();
    if (at('[')) return list(depth + 1);
    if (at('{')) return dict(depth + 1);
    if (at('\'') || at('"')) {
      Value v = Value::string(quoted());
      skip_ws();
      check_terminator(ctx);
      return v;
    }
    return primitive(ctx);
  }

  void check_terminator(Context ctx) const {
    if (pos_ == n_ || at(',') || (ctx == Context::List && at(']')) || (ctx == Context::DictValue && at('}')))
      return;
    fail(pos_, "unexpected '" + std::string(1, s_[pos_]) + "' after a quoted string (quote the whole value)");
  }

  // Inside quotes a backslash escapes only the quote character (and backslashes right
  // before it), as in Hydra: 'C:\dir' stays C:\dir, 'it\'s' is it's.
  std::string quoted() {
    const char q = s_[pos_];
    const size_t start = pos_++;
    std::string out;
    while (true) {
      if (pos_ == n_) fail(n_, std::string("missing closing ") + q + " for the string opened at column " + std::to_string(start + 1));
      char c = s_[pos_];
      if (c == '\\') {
        size_t run = 0;
        while (pos_ + run < n_ && s_[pos_ + run] == '\\') ++run;
        if (pos_ + run < n_ && s_[pos_ + run] == q) {
          out.append(run / 2, '\\');
          pos_ += run;
          if (run % 2 == 1) {
            out += q;
            ++pos_;
          }
          continue;
        }
        out.append(run, '\\');
        pos_ += run;
        continue;
      }
      ++pos_;
      if (c == q) return out;
      out += c;
    }
  }

  Value primitive(Context ctx) {
    static const std::string escapable = "\\,[]{}()=:'\" \t";
    const size_t start = pos_;
    std::string out;
    size_t keep = 0;  // escaped characters are never trimmed
    while (pos_ < n_) {
      char c = s_[pos_];
      if (c == '\\' && pos_ + 1 < n_ && escapable.find(s_[pos_ + 1]) != std::string::npos) {
        out += s_[pos_ + 1];
        pos_ += 2;
        keep = out.size();
        continue;
      }
      if (c == '$' && pos_ + 1 < n_ && s_[pos_ + 1] == '{') {
        size_t open = pos_, level = 0;
        for (; pos_ < n_; ++pos_) {
          if (s_[pos_] == '{') ++level;
          else if (s_[pos_] == '}' && --level == 0) break;
        }
        if (pos_ == n_) fail(open, "unterminated interpolation '${' (missing '}')");
        ++pos_;
        out += s_.substr(open, pos_ - open);
        keep = out.size();
        continue;
      }
      if (c == ',') break;
      if (c == ']' && ctx == Context::List) break;
      if (c == '}' && ctx == Context::DictValue) break;
      if (c == '[' || c == ']' || c == '{' || c == '}')
        fail(pos_, "unexpected '" + std::string(1, c) + "' (quote the value or escape it as \\" + c + ")");
      if (c == '\'' || c == '"') fail(pos_, "unexpected quote inside a value (quote the whole value)");
      out += c;
      ++pos_;
    }
    size_t end = out.size();
    while (end > keep && is_space(out[end - 1])) --end;
    out.resize(end);
    if (out.empty()) {
      if (ctx == Context::Top) fail(start, "empty value in a comma list");
      if (ctx == Context::List) fail(start, "empty list element");
      fail(start, "missing value after ':'");
    }
    return Value::plain(out);
  }

  Value list(int depth) {
    const size_t open = pos_++;
    if (depth > detail::kMaxDepth) fail(open, "nesting deeper than " + std::to_string(detail::kMaxDepth) + " levels");
    Value out = Value::make_list();
    skip_ws();
    if (at(']')) {
      ++pos_;
      return out;
    }
    while (true) {
      out.list.push_back(element(depth, Context::List));
      skip_ws();
      if (at(',')) {
        ++pos_;
        continue;
      }
      if (at(']')) {
        ++pos_;
        return out;
      }
      if (pos_ == n_) fail(n_, "missing ']' to close the list opened at column " + std::to_string(open + 1));
      fail(pos_, "expected ',' or ']' in the list opened at column " + std::to_string(open + 1));
    }
  }

  Value dict(int depth) {
    const size_t open = pos_++;
    if (depth > detail::kMaxDepth) fail(open, "nesting deeper than " + std::to_string(detail::kMaxDepth) + " levels");
    Value out = Value::make_map();
    skip_ws();
    if (at('}')) {
      ++pos_;
      return out;
    }
    while (true) {
      skip_ws();
      const size_t key_start = pos_;
      std::string key;
      if (at('\'') || at('"')) {
        key = quoted();
      } else {
        while (pos_ < n_ && s_[pos_] != ':') {
          char c = s_[pos_];
          if (c == ',' || c == '{' || c == '}' || c == '[' || c == ']' || c == '\'' || c == '"') break;
          key += c;
          ++pos_;
        }
        key = trimmed_str(key);
      }
      if (pos_ == n_) fail(n_, "missing '}' to close the map opened at column " + std::to_string(open + 1));
      if (key.empty()) fail(key_start, "missing key in the map opened at column " + std::to_string(open + 1));
      skip_ws();
      if (!at(':')) fail(pos_, "expected ':' after map key '" + key + "'");
      ++pos_;
      if (out.find(key)) fail(key_start, "duplicate key '" + key + "' in map");
      out.map.emplace_back(key, element(depth, Context::DictValue));
      skip_ws();
      if (at(',')) {
        ++pos_;
        continue;
      }
      if (at('}')) {
        ++pos_;
        return out;
      }
      if (pos_ == n_) fail(n_, "missing '}' to close the map opened at column " + std::to_string(open + 1));
      fail(pos_, "expected ',' or '}' in the map opened at column " + std::to_string(open + 1));
    }
  }

  static std::string trimmed_str(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return s.substr(b, e - b);
  }

  const std::string& s_;
  const size_t n_;
  size_t pos_ = 0;
};

bool is_index(const std::string& seg) {
  return !seg.empty() && seg.size() < 10 && std::all_of(seg.begin(), seg.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Child of a map (by key) or of a list (by index); nullptr when absent.
Value* child(Value& node, const std::string& seg) {
  if (node.is_map()) return node.find(seg);
  if (node.is_list() && is_index(seg)) {
    size_t i = std::stoul(seg);
    return i < node.list.size() ? &node.list[i] : nullptr;
  }
  return nullptr;
}

std::string no_such_key(const std::string& verb, const Value& root, const std::string& key) {
  std::vector<std::string> paths;
  detail::collect_paths(root, "", paths);
  std::string s = "Could not " + verb + " '" + key + "': no such key";
  std::string near = suggest(key, paths);
  if (!near.empty()) s += " (did you mean '" + near + "'?)";
  return s;
}

}  // namespace

bool Override::names_group() const {
  return key.find('/') != std::string::npos || key.find('@') != std::string::npos;
}

const char* Override::prefix() const {
  switch (op) {
    case Op::Set: return "";
    case Op::Add: return "+";
    case Op::ForceAdd: return "++";
    case Op::Delete: return "~";
  }
  return "";
}

Override parse_override(const std::string& text) { return Parser(text).parse(); }

void apply_override(Value& root, const Override& o) {
  if (o.names_group())
    throw ConfigError("Could not apply '" + o.text + "': '" + o.key + "' is not a config group here");
  if (o.is_sweep())
    throw ConfigError("Could not apply '" + o.text + "': a comma-separated value is a sweep; quote it (" + o.key +
                      "='" + o.value_texts.front() + ",...'), make it a list (" + o.key +
                      "=[...]) or run a multi-run sweep (-m)");
  const std::vector<std::string> segs = detail::split(o.key, '.');
  // Walk to the parent of the last segment, noting where the path stops existing.
  Value* node = &root;
  size_t found = 0;
  for (; found + 1 < segs.size(); ++found) {
    Value* next = child(*node, segs[found]);
    if (!next) break;
    node = next;
  }
  const bool parent_exists = found + 1 == segs.size();
  Value* target = parent_exists ? child(*node, segs.back()) : nullptr;
  const std::string& key = o.key;

  auto not_a_map = [&](const std::string& verb) {
    std::string prefix = detail::join(segs, '.', 0, found);
    return ConfigError("Could not " + verb + " '" + key + "': '" + prefix + "' holds " +
                       detail::describe_value(*node) + ", not a map");
  };

  switch (o.op) {
    case Override::Op::Set:
      if (!target) {
        if (!node->is_map() && !node->is_list() && found > 0) throw not_a_map("override");
        throw ConfigError(no_such_key("override", root, key) + ". To add a new key use +" + key + "=...");
      }
      if (target->is_map() && o.value.is_map()) detail::merge_into(*target, o.value);
      else *target = o.value;
      return;
    case Override::Op::Delete: {
      if (!target) throw ConfigError(no_such_key("delete", root, key));
      if (o.has_value && !detail::equal(*target, o.value))
        throw ConfigError("Could not delete '" + key + "': its value is " + detail::describe_value(*target) +
                          ", not " + detail::describe_value(o.value));
      if (node->is_map()) {
        node->erase(segs.back());
      } else {
        node->list.erase(node->list.begin() + static_cast<std::ptrdiff_t>(std::stoul(segs.back())));
      }
      return;
    }
    case Override::Op::Add:
    case Override::Op::ForceAdd:
      if (target) {
        if (o.op == Override::Op::Add)
          throw ConfigError("Could not append to config: an item is already at '" + key + "'. Use " + key +
                            "=... to change it, or ++" + key + "=... to add or change it");
        if (target->is_map() && o.value.is_map()) detail::merge_into(*target, o.value);
        else *target = o.value;
        return;
      }
      // Create the missing maps on the way down.
      for (size_t i = found; i < segs.size(); ++i) {
        if (node->is_null()) *node = Value::make_map();
        if (!node->is_map()) {
          if (node->is_list())
            throw ConfigError("Could not add '" + key + "': '" + detail::join(segs, '.', 0, i) +
                              "' is a list; set a list whole (" + detail::join(segs, '.', 0, i) + "=[...])");
          found = i;
          throw not_a_map("add");
        }
        node = &node->set(segs[i], i + 1 == segs.size() ? o.value : Value::make_map());
      }
      return;
  }
}

}  // namespace retort::config
