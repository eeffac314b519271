#include "config/interpolate.h"

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/error.h"

namespace retort::config::detail {
namespace {

using Path = std::vector<std::string>;

// Longest chain of nested resolutions (a -> b -> c ...): bounds the recursion.
constexpr size_t kMaxChain = 256;

bool is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

std::string show(const Path& p) { return p.empty() ? "<root>" : join(p, '.'); }

bool is_index(const std::string& seg) {
  if (seg.empty() || seg.size() > 9) return false;
  for (char c : seg)
    if (c < '0' || c > '9') return false;
  return true;
}

// One piece of a string: literal text or the inside of ${...}.
struct Piece {
  bool interpolation;
  std::string text;
};

class Resolver {
 public:
  Resolver(Value& root, std::time_t now) : root_(root), now_(now) {}

  void run() { resolve_node(root_, {}); }

 private:
  // ---------------------------------------------------------------- tree walk
  void resolve_node(Value& v, const Path& path) {
    if (done_.count(&v)) return;
    if (active_.count(&v)) {
      std::string chain;
      for (const auto& p : chain_) chain += p + " -> ";
      throw ConfigError("interpolation cycle: " + chain + show(path));
    }
    if (v.is_scalar() && kind_of(v) == Kind::String && v.text.find("${") != std::string::npos) {
      if (chain_.size() >= kMaxChain)
        throw ConfigError("interpolation chain longer than " + std::to_string(kMaxChain) + " steps at " + show(path));
      active_.insert(&v);
      chain_.push_back(show(path));
      bool literal = false;
      Value result = evaluate(v.text, path, literal);
      chain_.pop_back();
      active_.erase(&v);
      v = std::move(result);
      mark_done(v);
      return;
    }
    if (v.is_map() || v.is_list()) {
      active_.insert(&v);
      Path child_path = path;
      child_path.emplace_back();
      if (v.is_map()) {
        for (auto& [key, child] : v.map) {
          child_path.back() = key;
          resolve_node(child, child_path);
        }
      } else {
        for (size_t i = 0; i < v.list.size(); ++i) {
          child_path.back() = std::to_string(i);
          resolve_node(v.list[i], child_path);
        }
      }
      active_.erase(&v);
    }
    done_.insert(&v);
  }

  // A copied, already resolved value must not be resolved again (an escaped \${x} has
  // become a literal ${x} by then).
  void mark_done(Value& v) {
    done_.insert(&v);
    for (auto& kv : v.map) mark_done(kv.second);
    for (auto& c : v.list) mark_done(c);
  }

  // ---------------------------------------------------------------- strings
  std::vector<Piece> split_pieces(const std::string& s, const Path& path) const {
    std::vector<Piece> pieces;
    auto literal = [&](const std::string& text) {
      if (pieces.empty() || pieces.back().interpolation) pieces.push_back({false, ""});
      pieces.back().text += text;
    };
    size_t i = 0;
    while (i < s.size()) {
      if (s[i] == '\\') {
        size_t run = 0;
        while (i + run < s.size() && s[i + run] == '\\') ++run;
        if (s.compare(i + run, 2, "${") == 0) {
          // n backslashes before ${: n/2 literal backslashes; odd n escapes the ${.
          literal(std::string(run / 2, '\\'));
          i += run;
          if (run % 2 == 1) {
            literal("${");
            i += 2;
          }
          continue;
        }
        literal(std::string(run, '\\'));
        i += run;
        continue;
      }
      if (s.compare(i, 2, "${") == 0) {
        size_t level = 0, j = i + 1;
        for (; j < s.size(); ++j) {
          if (s[j] == '{') ++level;
          else if (s[j] == '}' && --level == 0) break;
        }
        if (j >= s.size())
          throw ConfigError("unterminated interpolation in '" + s + "' at " + show(path) + " (missing '}')");
        pieces.push_back({true, s.substr(i + 2, j - i - 2)});
        i = j + 1;
        continue;
      }
      size_t next = s.find_first_of("\\$", i + 1);
      if (next == std::string::npos) next = s.size();
      literal(s.substr(i, next - i));
      i = next;
    }
    return pieces;
  }

  // `literal` is set when the string held no interpolation at all (only escapes).
  Value evaluate(const std::string& s, const Path& path, bool& literal) {
    std::vector<Piece> pieces = split_pieces(s, path);
    literal = true;
    for (const auto& p : pieces) literal = literal && !p.interpolation;
    if (pieces.size() == 1 && pieces[0].interpolation) return evaluate_inner(pieces[0].text, path);
    std::string out;
    for (const auto& p : pieces) {
      if (!p.interpolation) {
        out += p.text;
      } else {
        Value v = evaluate_inner(p.text, path);
        if (v.is_map() || v.is_list())
          throw ConfigError("interpolation '${" + p.text + "}' at " + show(path) + " is " + describe_value(v) +
                            ", which cannot be part of a string");
        out += v.is_null() ? "null" : v.text;
      }
      if (out.size() > kMaxStringBytes)
        throw ConfigError("interpolation at " + show(path) + " makes a string longer than " +
                          std::to_string(kMaxStringBytes) + " bytes");
    }
    return Value::string(out);
  }

  Value evaluate_inner(const std::string& inner_raw, const Path& path) {
    const std::string inner = trim(inner_raw);
    const std::string shown = "'${" + inner_raw + "}' at " + show(path);
    if (inner.empty()) throw ConfigError("empty interpolation " + shown);
    size_t colon = inner.find(':');
    if (colon != std::string::npos) {
      std::string name = trim(inner.substr(0, colon));
      std::string args = inner.substr(colon + 1);
      if (name == "env") return env(args, path, shown);
      if (name == "now") return now(trim(args), shown);
      throw ConfigError("unknown resolver '" + name + "' in " + shown + "; only ${env:VAR,default} and ${now:FORMAT} exist");
    }
    return reference(inner, path, shown);
  }

  Value env(const std::string& args, const Path& path, const std::string& shown) {
    // The default starts after the first comma outside a nested ${...}.
    size_t comma = std::string::npos, level = 0;
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i] == '{') ++level;
      else if (args[i] == '}' && level > 0) --level;
      else if (args[i] == ',' && level == 0) {
        comma = i;
        break;
      }
    }
    std::string var = trim(args.substr(0, comma));
    bool valid = !var.empty() && !(var[0] >= '0' && var[0] <= '9');
    for (char c : var) valid = valid && (is_key_char(c) && c != '-');
    if (!valid) throw ConfigError("invalid environment variable name '" + var + "' in " + shown);
    if (const char* value = std::getenv(var.c_str())) {
      std::string text = value;
      if (!valid_utf8(text)) throw ConfigError("environment variable '" + var + "' is not valid UTF-8, in " + shown);
      return Value::plain(text);
    }
    if (comma == std::string::npos)
      throw ConfigError("environment variable '" + var + "' is not set, in " + shown + " (give a default: ${env:" +
                        var + ",default})");
    std::string def = trim(args.substr(comma + 1));
    if (def.size() >= 2 && (def[0] == '\'' || def[0] == '"') && def.back() == def[0]) {
      bool literal = false;
      Value v = evaluate(def.substr(1, def.size() - 2), path, literal);
      return v.is_scalar() || v.is_null() ? Value::string(v.is_null() ? "null" : v.text) : v;
    }
    if (def.empty()) return Value::string("");
    bool literal = false;
    Value v = evaluate(def, path, literal);
    // A plain default is typed like a YAML scalar (${env:PORT,8080} is an int).
    return literal ? Value::plain(v.text) : v;
  }

  Value now(const std::string& format_arg, const std::string& shown) {
    const std::string format = format_arg.empty() ? "%Y-%m-%d_%H-%M-%S" : format_arg;
    std::tm tm{};
    if (!localtime_r(&now_, &tm)) throw ConfigError("cannot read the local time for " + shown);
    // A leading marker tells an empty expansion from a too-small buffer.
    const std::string marked = "#" + format;
    for (size_t size = 64; size <= 65536; size *= 4) {
      std::string buf(size, '\0');
      size_t n = std::strftime(buf.data(), buf.size(), marked.c_str(), &tm);
      if (n > 0) return Value::string(buf.substr(1, n - 1));
    }
    throw ConfigError("time format too long in " + shown);
  }

  Value reference(const std::string& ref, const Path& path, const std::string& shown) {
    size_t dots = 0;
    while (dots < ref.size() && ref[dots] == '.') ++dots;
    Path target;
    if (dots > 0) {
      // One dot: the map holding the string; each further dot one level up.
      if (path.empty() || dots > path.size())
        throw ConfigError("relative interpolation " + shown + " goes above the root");
      target.assign(path.begin(), path.end() - static_cast<std::ptrdiff_t>(dots));
    }
    std::string rest = ref.substr(dots);
    if (!rest.empty()) {
      for (const auto& seg : split(rest, '.')) {
        bool ok = !seg.empty();
        for (char c : seg) ok = ok && is_key_char(c);
        if (!ok)
          throw ConfigError("invalid interpolation " + shown +
                            " (expected a key path like ${a.b} or ${.sibling}, ${env:VAR} or ${now:FORMAT})");
        target.push_back(seg);
      }
    }
    Value* node = &root_;
    for (size_t i = 0; i < target.size(); ++i) {
      resolve_if_string(*node, Path(target.begin(), target.begin() + static_cast<std::ptrdiff_t>(i)));
      Value* next = nullptr;
      if (node->is_map()) next = node->find(target[i]);
      else if (node->is_list() && is_index(target[i]) && std::stoul(target[i]) < node->list.size())
        next = &node->list[std::stoul(target[i])];
      if (!next) missing(target, i, shown);
      node = next;
    }
    resolve_node(*node, target);
    budget_ += count_nodes(*node);
    if (budget_ > kMaxNodes)
      throw ConfigError("interpolations expand the config beyond " + std::to_string(kMaxNodes) + " values, at " +
                        show(path));
    return *node;
  }

  void resolve_if_string(Value& v, const Path& path) {
    if (v.is_scalar() && !done_.count(&v)) resolve_node(v, path);
  }

  [[noreturn]] void missing(const Path& target, size_t failed, const std::string& shown) const {
    std::string chain;
    for (const auto& p : chain_) chain += p + " -> ";
    std::vector<std::string> paths;
    collect_paths(root_, "", paths);
    std::string full = show(target);
    std::string msg = "interpolation target not found: " + chain + full + " (" + shown + ": no such key '" +
                      join(target, '.', 0, failed + 1) + "'";
    std::string near = suggest(full, paths);
    if (!near.empty()) msg += ", did you mean '" + near + "'?";
    throw ConfigError(msg + ")");
  }

  Value& root_;
  std::time_t now_;
  std::set<const Value*> done_, active_;
  std::vector<std::string> chain_;
  size_t budget_ = 0;
};

}  // namespace

void resolve(Value& root, std::time_t now) { Resolver(root, now).run(); }

}  // namespace retort::config::detail
