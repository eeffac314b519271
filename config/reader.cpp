// Typed, validated access: Reader, the field decoders and constraint checks, describe,
// suggest.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <set>

#include "core/text.h"
#include "config/config.h"
#include "config/value.h"

namespace retort::config {

using detail::Kind;
using detail::Value;

// ------------------------------------------------------------------------------------
// Decoders
// ------------------------------------------------------------------------------------
namespace detail {
namespace {

bool fail(std::string& err, const char* expected, const Value& v, const std::string& why = "") {
  err = std::string("expected ") + expected + ", got " + describe_value(v);
  if (!why.empty()) err.insert(err.size() - 1, ", " + why);
  return false;
}

std::string number_text(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

bool decode(const Value& v, bool& out, std::string& err) {
  if (kind_of(v) != Kind::Bool) return fail(err, "bool", v);
  out = v.text[0] == 't' || v.text[0] == 'T';
  return true;
}

bool decode(const Value& v, int64_t& out, std::string& err) {
  if (kind_of(v) != Kind::Int) return fail(err, "int", v);
  if (!parse_int(v.text, out)) return fail(err, "int", v, "out of range");
  return true;
}

bool decode(const Value& v, int& out, std::string& err) {
  int64_t wide = 0;
  if (!decode(v, wide, err)) return false;
  if (wide < std::numeric_limits<int>::min() || wide > std::numeric_limits<int>::max())
    return fail(err, "int", v, "out of 32-bit range");
  out = static_cast<int>(wide);
  return true;
}

bool decode(const Value& v, uint64_t& out, std::string& err) {
  int64_t wide = 0;
  if (!decode(v, wide, err)) return false;
  if (wide < 0) return fail(err, "int >= 0", v);
  out = static_cast<uint64_t>(wide);
  return true;
}

bool decode(const Value& v, double& out, std::string& err) {
  Kind k = kind_of(v);
  if (k != Kind::Int && k != Kind::Float) return fail(err, "float", v);
  if (!parse_float(v.text, out)) return fail(err, "float", v, "out of range");
  return true;
}

bool decode(const Value& v, float& out, std::string& err) {
  double wide = 0;
  if (!decode(v, wide, err)) return false;
  if (std::isfinite(wide) && std::fabs(wide) > std::numeric_limits<float>::max())
    return fail(err, "float", v, "out of 32-bit float range");
  out = static_cast<float>(wide);
  return true;
}

bool decode(const Value& v, std::string& out, std::string& err) {
  // Any scalar reads as its text (a run name of 2024 is fine); null, maps and lists are not.
  if (!v.is_scalar()) return fail(err, "string", v);
  out = v.text;
  return true;
}

bool decode(const Value& v, YAML::Node& out, std::string&) {
  out = to_yaml(v);
  return true;
}

bool is_null(const Value& v) { return v.is_null(); }
bool is_list(const Value& v) { return v.is_list(); }
size_t list_size(const Value& v) { return v.list.size(); }
const Value& list_item(const Value& v, size_t i) { return v.list[i]; }
std::string describe(const Value& v) { return describe_value(v); }

std::string render(bool v) { return v ? "true" : "false"; }
std::string render(int64_t v) { return std::to_string(v); }
std::string render(uint64_t v) { return std::to_string(v); }
std::string render(double v) {
  std::string s = number_text(v);
  // Keep it a float when read back as YAML (1 -> 1.0).
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}
std::string render(const std::string& v) { return emit_string(v); }
std::string render(const YAML::Node& v) {
  if (!v.IsDefined() || v.IsNull()) return "null";
  return flow(from_yaml(v, "default"));
}

namespace {

std::string constraint_text(const FieldBase::Impl& f) {
  std::vector<std::string> parts;
  if (f.min) parts.push_back(">= " + number_text(*f.min));
  if (f.greater) parts.push_back("> " + number_text(*f.greater));
  if (f.max) parts.push_back("<= " + number_text(*f.max));
  if (f.less) parts.push_back("< " + number_text(*f.less));
  if (!f.choices.empty()) parts.push_back("one of: " + retort::join(f.choices));
  return retort::join(parts, " and ");
}

// Checks one scalar against the field's bounds and choices; "" when fine.
std::string check_scalar(const FieldBase::Impl& f, const Value& v) {
  if (v.is_null()) return "";
  Kind k = kind_of(v);
  if (f.numeric && (k == Kind::Int || k == Kind::Float)) {
    double x = 0;
    if (!parse_float(v.text, x)) return "";  // the decoder reported it
    auto bad = [&](const char* op, double bound, bool ok) {
      return ok ? std::string() : std::string("must be ") + op + " " + number_text(bound) + ", got " + v.text;
    };
    std::string e;
    if (f.min && (e = bad(">=", *f.min, x >= *f.min)).size()) return e;
    if (f.greater && (e = bad(">", *f.greater, x > *f.greater)).size()) return e;
    if (f.max && (e = bad("<=", *f.max, x <= *f.max)).size()) return e;
    if (f.less && (e = bad("<", *f.less, x < *f.less)).size()) return e;
  }
  if (!f.choices.empty() && v.is_scalar() &&
      std::find(f.choices.begin(), f.choices.end(), v.text) == f.choices.end()) {
    std::string msg = "must be one of: ";
    msg += retort::join(f.choices);
    msg += "; got '" + v.text + "'";
    std::string near = suggest(v.text, f.choices);
    if (!near.empty()) msg += " (did you mean '" + near + "'?)";
    return msg;
  }
  return "";
}

std::string check_constraints(const FieldBase::Impl& f, const Value& v) {
  if (v.is_list()) {
    for (size_t i = 0; i < v.list.size(); ++i) {
      std::string e = check_scalar(f, v.list[i]);
      if (!e.empty()) return "element [" + std::to_string(i) + "] " + e;
    }
    return "";
  }
  return check_scalar(f, v);
}

}  // namespace

KeyInfo key_info(const FieldBase& field, const std::string& path, const void* defaults) {
  const FieldBase::Impl& f = *field.impl;
  return KeyInfo{join_key(path, f.key), f.type, f.render(defaults), constraint_text(f), f.help};
}

}  // namespace detail

// ------------------------------------------------------------------------------------
// FieldBase setters
// ------------------------------------------------------------------------------------
namespace {

FieldBase::Impl& numeric_impl(FieldBase& field, const char* setter) {
  if (!field.impl->numeric)
    throw Error(std::string("config: ") + setter + "() on field '" + field.impl->key + "' of type " +
                field.impl->type + " (bounds need an int or float field)");
  return *field.impl;
}

}  // namespace

FieldBase& FieldBase::min(double v) {
  numeric_impl(*this, "min").min = v;
  return *this;
}
FieldBase& FieldBase::max(double v) {
  numeric_impl(*this, "max").max = v;
  return *this;
}
FieldBase& FieldBase::greater_than(double v) {
  numeric_impl(*this, "greater_than").greater = v;
  return *this;
}
FieldBase& FieldBase::less_than(double v) {
  numeric_impl(*this, "less_than").less = v;
  return *this;
}
FieldBase& FieldBase::one_of(std::vector<std::string> choices) {
  if (impl->free_form || impl->type == "bool")
    throw Error("config: one_of() on field '" + impl->key + "' of type " + impl->type);
  impl->choices = std::move(choices);
  return *this;
}
FieldBase& FieldBase::optional_key() {
  impl->required = false;
  return *this;
}
FieldBase& FieldBase::required() {
  impl->required = true;
  return *this;
}

// ------------------------------------------------------------------------------------
// Reader
// ------------------------------------------------------------------------------------

struct Reader::State {
  Value root;
  std::vector<std::pair<std::string, std::string>> problems;  // (path, message)
  std::set<std::string> fields;    // declared field paths
  std::set<std::string> prefixes;  // read sections and every map on the way to a field
  std::set<std::string> extra;     // allow_extra paths
  std::vector<KeyInfo> declared;

  void problem(const std::string& path, const std::string& message) { problems.emplace_back(path, message); }

  void add_prefixes(const std::string& path) {
    if (path.empty()) return;
    std::vector<std::string> segs = detail::split(path, '.');
    for (size_t i = 1; i <= segs.size(); ++i) prefixes.insert(detail::join(segs, '.', 0, i));
  }

  bool under_extra(const std::string& path) const {
    for (const auto& e : extra)
      if (e.empty() || path == e || path.compare(0, e.size() + 1, e + ".") == 0) return true;
    return false;
  }

  // The map at `path` (relative to `from`); nullptr when absent or null. A non-map on the
  // way is reported once and also yields nullptr.
  const Value* find_map(const Value& from, const std::string& base, const std::vector<std::string>& segs,
                        size_t count, bool* blocked) {
    const Value* node = &from;
    for (size_t i = 0; i < count; ++i) {
      if (node->is_null()) return nullptr;
      if (!node->is_map()) {
        problem(detail::join_key(base, detail::join(segs, '.', 0, i)),
                "expected a map, got " + detail::describe_value(*node));
        *blocked = true;
        return nullptr;
      }
      node = node->find(segs[i]);
      if (!node) return nullptr;
    }
    return node;
  }
};

Reader::Reader(YAML::Node root) : state_(std::make_unique<State>()) {
  state_->root = detail::from_yaml(root, "config");
  if (state_->root.is_null()) state_->root = Value::make_map();
  if (!state_->root.is_map())
    throw ConfigError("invalid configuration: expected a map at the top, got " + detail::describe_value(state_->root));
}

Reader::~Reader() = default;
Reader::Reader(Reader&&) noexcept = default;
Reader& Reader::operator=(Reader&&) noexcept = default;

void Reader::read(const std::string& path, const std::vector<std::unique_ptr<FieldBase>>& fields, void* object) {
  State& s = *state_;
  s.add_prefixes(path);
  bool blocked = false;
  const std::vector<std::string> path_segs = path.empty() ? std::vector<std::string>{} : detail::split(path, '.');
  const Value* section = s.find_map(s.root, "", path_segs, path_segs.size(), &blocked);
  if (section && !section->is_map() && !section->is_null()) {
    s.problem(path, "expected a map (section), got " + detail::describe_value(*section));
    blocked = true;
  }
  for (const auto& field : fields) {
    const FieldBase::Impl& f = *field->impl;
    const std::string full = detail::join_key(path, f.key);
    if (s.fields.insert(full).second) {
      // detail::key_info renders the default from a fresh object: the caller's object
      // still holds its defaults here, since each field is written after it is declared.
      s.declared.push_back(detail::key_info(*field, path, object));
    }
    std::vector<std::string> key_segs = detail::split(f.key, '.');
    if (key_segs.size() > 1) s.add_prefixes(detail::join_key(path, detail::join(key_segs, '.', 0, key_segs.size() - 1)));
    if (blocked) continue;
    const Value* value = nullptr;
    if (section && section->is_map()) {
      bool field_blocked = false;
      const Value* parent = s.find_map(*section, path, key_segs, key_segs.size() - 1, &field_blocked);
      if (field_blocked) continue;
      if (parent && parent->is_map()) value = parent->find(key_segs.back());
      else if (parent && !parent->is_null()) {
        s.problem(detail::join_key(path, detail::join(key_segs, '.', 0, key_segs.size() - 1)),
                  "expected a map, got " + detail::describe_value(*parent));
        continue;
      }
    }
    if (!value) {
      if (f.required) s.problem(full, "missing required key (" + f.type + ": " + f.help + ")");
      continue;
    }
    std::string err;
    if (!f.assign(object, *value, err)) {
      s.problem(full, err);
      continue;
    }
    std::string violation = detail::check_constraints(f, *value);
    if (!violation.empty()) s.problem(full, violation);
  }
}

void Reader::allow_extra(const std::string& path) { state_->extra.insert(path); }

const std::vector<KeyInfo>& Reader::declared() const { return state_->declared; }

void Reader::finish() {
  State& s = *state_;
  std::vector<std::string> candidates(s.fields.begin(), s.fields.end());
  candidates.insert(candidates.end(), s.prefixes.begin(), s.prefixes.end());
  std::vector<std::pair<std::string, std::string>> problems = s.problems;

  // Every key of the tree must be a declared field, lie under one, or be a map on the
  // way to one; anything else is unknown.
  std::function<void(const Value&, const std::string&)> walk = [&](const Value& node, const std::string& prefix) {
    for (const auto& [key, child] : node.map) {
      const std::string path = detail::join_key(prefix, key);
      if (s.fields.count(path) || s.under_extra(path)) continue;
      if (s.prefixes.count(path)) {
        if (child.is_map()) walk(child, path);
        continue;
      }
      std::string msg = "unknown key";
      std::string near = suggest(path, candidates);
      if (!near.empty()) msg += " (did you mean '" + near + "'?)";
      problems.emplace_back(path, msg);
    }
  };
  if (!s.under_extra("")) walk(s.root, "");

  if (problems.empty()) return;
  std::sort(problems.begin(), problems.end());
  problems.erase(std::unique(problems.begin(), problems.end()), problems.end());
  auto line = [](const std::pair<std::string, std::string>& p) {
    return (p.first.empty() ? "<root>" : p.first) + ": " + p.second;
  };
  // One problem, one line (as every error); several, one line each under a count.
  if (problems.size() == 1) throw ConfigError("invalid configuration: " + line(problems.front()));
  std::string text = "invalid configuration (" + std::to_string(problems.size()) + " problems):";
  for (const auto& p : problems) text += "\n  " + line(p);
  throw ConfigError(text);
}

// ------------------------------------------------------------------------------------
// suggest
// ------------------------------------------------------------------------------------

std::string suggest(const std::string& key, const std::vector<std::string>& candidates) {
  auto leaf = [](const std::string& p) {
    size_t dot = p.rfind('.');
    return dot == std::string::npos ? p : p.substr(dot + 1);
  };
  auto best_of = [&](auto&& project) {
    const std::string k = project(key);
    // About one typo per three characters; keys of one or two characters get none.
    const size_t limit = k.size() / 3;
    if (limit == 0) return std::string();
    std::string best;
    size_t best_d = limit + 1;
    std::vector<std::string> sorted = candidates;
    std::sort(sorted.begin(), sorted.end());
    for (const auto& c : sorted) {
      if (c == key) continue;
      const std::string p = project(c);
      // Cheap bound first: lengths that differ by more than the limit cannot be close.
      size_t gap = p.size() > k.size() ? p.size() - k.size() : k.size() - p.size();
      if (gap > limit) continue;
      size_t d = detail::edit_distance(k, p);
      if (d < best_d) best_d = d, best = c;
    }
    return best;
  };
  std::string whole = best_of([](const std::string& p) { return p; });
  if (!whole.empty()) return whole;
  if (key.find('.') == std::string::npos) return "";
  return best_of(leaf);
}

}  // namespace retort::config
