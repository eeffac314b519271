// Composition: the defaults tree (config groups, _self_, nested defaults, `override`
// entries), command-line group and key overrides, then interpolation.
#include <algorithm>
#include <ctime>
#include <set>

#include "core/text.h"
#include "config/config.h"
#include "config/interpolate.h"
#include "config/override.h"
#include "config/value.h"

namespace retort::config {
namespace {

using detail::Value;

// Bounds on the defaults tree (a recipe that includes itself is caught earlier as a cycle;
// these stop diamond-shaped blow-ups).
constexpr size_t kMaxDefaultsDepth = 32;
constexpr size_t kMaxFilesLoaded = 1000;

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

// Option / group / config names: path segments of name characters, no "." or ".." segment
// (nothing may escape the search roots).
bool valid_name(const std::string& name) {
  if (name.empty()) return false;
  for (const auto& seg : detail::split(name, '/')) {
    if (seg.empty() || seg == "." || seg == "..") return false;
    for (char c : seg)
      if (!is_name_char(c)) return false;
  }
  return true;
}

bool valid_package(const std::string& pkg) {
  if (pkg.empty()) return true;
  for (const auto& seg : detail::split(pkg, '.')) {
    if (seg.empty()) return false;
    for (char c : seg)
      if (!is_name_char(c) || c == '.') return false;
  }
  return true;
}

std::string dotted(const std::string& group) {
  std::string s = group;
  std::replace(s.begin(), s.end(), '/', '.');
  return s;
}

std::string join_names(const std::vector<std::string>& names) {
  return names.empty() ? "(none)" : retort::join(names);
}

// `# @package foo.bar` in the leading comment lines of a group file.
std::optional<std::string> package_header(const std::string& text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos) continue;
    if (line[b] != '#') break;
    size_t at = line.find("@package", b);
    if (at == std::string::npos) continue;
    std::string rest = line.substr(at + 8);
    size_t s = rest.find_first_not_of(" \t");
    if (s == std::string::npos) return std::string();
    size_t e = rest.find_first_of(" \t\r", s);
    return rest.substr(s, e == std::string::npos ? std::string::npos : e - s);
  }
  return std::nullopt;
}

struct SearchRoots {
  std::vector<fs::path> roots;

  SearchRoots(const fs::path& recipe, const std::vector<fs::path>& extra) {
    fs::path dir = recipe.parent_path();
    if (dir.empty()) dir = ".";
    std::vector<fs::path> chain;
    std::error_code ec;
    fs::path cur = fs::absolute(dir, ec).lexically_normal();
    if (!cur.has_filename() && cur.has_parent_path() && cur != cur.root_path()) cur = cur.parent_path();
    bool found = false;
    for (size_t guard = 0; guard < 64; ++guard) {
      chain.push_back(cur);
      if (cur.filename() == "recipes") {
        found = true;
        break;
      }
      if (!cur.has_parent_path() || cur.parent_path() == cur) break;
      cur = cur.parent_path();
    }
    roots.push_back(dir);
    if (found) roots.insert(roots.end(), chain.begin() + 1, chain.end());
    for (const auto& p : extra) roots.push_back(p);
  }

  bool is_group(const std::string& group) const {
    std::error_code ec;
    for (const auto& r : roots)
      if (fs::is_directory(r / group, ec)) return true;
    return false;
  }

  std::optional<fs::path> find_file(const std::string& rel) const {
    std::error_code ec;
    for (const auto& r : roots) {
      for (const char* ext : {".yaml", ".yml"}) {
        fs::path p = r / (rel + ext);
        if (fs::is_regular_file(p, ec)) return p;
      }
    }
    return std::nullopt;
  }

  std::vector<std::string> options(const std::string& group) const {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& r : roots) {
      fs::directory_iterator it(r / group, ec), end;
      for (; !ec && it != end; it.increment(ec)) {
        const fs::path& p = it->path();
        if ((p.extension() == ".yaml" || p.extension() == ".yml") && it->is_regular_file(ec))
          out.insert(p.stem().string());
      }
      ec.clear();
    }
    return {out.begin(), out.end()};
  }

  std::map<std::string, std::vector<std::string>> groups() const {
    std::map<std::string, std::set<std::string>> found;
    std::set<fs::path> root_set;
    std::error_code ec;
    for (const auto& r : roots) root_set.insert(fs::weakly_canonical(r, ec));
    for (const auto& r : roots) {
      fs::recursive_directory_iterator it(r, fs::directory_options::skip_permission_denied, ec), end;
      for (; !ec && it != end; it.increment(ec)) {
        if (it.depth() > 8) {
          it.disable_recursion_pending();
          continue;
        }
        const fs::path& p = it->path();
        if (it->is_directory(ec)) {
          // A search root inside another one holds recipes, not group options.
          if (root_set.count(fs::weakly_canonical(p, ec))) it.disable_recursion_pending();
          continue;
        }
        if (it.depth() == 0 || !(p.extension() == ".yaml" || p.extension() == ".yml")) continue;
        std::string group = p.parent_path().lexically_relative(r).generic_string();
        found[group].insert(p.stem().string());
      }
      ec.clear();
    }
    std::map<std::string, std::vector<std::string>> out;
    for (auto& [g, opts] : found) out[g] = {opts.begin(), opts.end()};
    return out;
  }
};

// A group choice given on the command line or by an `override` entry.
struct Choice {
  Override::Op op = Override::Op::Set;
  std::string option;  // "" when null (drop the group)
  std::string origin;  // "override 'model=x'" or "'file.yaml'"
  bool used = false;
};

struct Entry {
  enum class Kind { Self, Group, Config } kind = Kind::Self;
  std::string group;    // absolute group path ("model/cnn")
  std::string option;   // option name, or config name for Kind::Config; "" = null
  std::string package;  // absolute package ("" = root)
  std::string key;      // choice key: group, or group@package for a non-default package
  bool explicit_package = false;
  bool optional = false;
  bool from_command_line = false;
  std::string origin;
};

class Composer {
 public:
  Composer(const SearchRoots& roots, std::map<std::string, Choice>& cmd, std::vector<Entry> appended)
      : roots_(roots), cmd_(cmd), appended_(std::move(appended)) {}

  Value result = Value::make_map();
  std::map<std::string, std::string> choices;
  std::string primary_text;
  std::string primary_source;  ///< ComposeRequest::recipe_text

  void compose_primary(const fs::path& recipe) {
    std::vector<std::map<std::string, Choice>*> scopes;
    compose_file(recipe, "", "", false, scopes, true);
  }

 private:
  void compose_file(const fs::path& file, const std::string& group, const std::string& package, bool explicit_pkg,
                    std::vector<std::map<std::string, Choice>*>& scopes, bool primary) {
    std::error_code ec;
    const std::string id = fs::weakly_canonical(file, ec).string();
    if (std::find(stack_.begin(), stack_.end(), id) != stack_.end()) {
      std::string chain;
      for (const auto& f : stack_names_) chain += f + " -> ";
      throw ConfigError("defaults cycle: " + chain + file.string());
    }
    if (stack_.size() >= kMaxDefaultsDepth)
      throw ConfigError("defaults lists nested deeper than " + std::to_string(kMaxDefaultsDepth) + " at " + quoted(file));
    if (++files_loaded_ > kMaxFilesLoaded)
      throw ConfigError("defaults tree loads more than " + std::to_string(kMaxFilesLoaded) + " files (at " +
                        quoted(file) + ")");
    std::string raw;
    Value content = primary && !primary_source.empty()
                        ? detail::load_yaml_text(raw = primary_source, file.string())
                        : detail::load_yaml_file(file, &raw);
    if (primary) primary_text = raw;

    std::string pkg = package;
    if (!primary && !explicit_pkg) {
      if (auto header = package_header(raw)) {
        if (*header == "_global_") pkg = "";
        else if (header->compare(0, 9, "_global_.") == 0) pkg = header->substr(9);
        else if (*header != "_group_") pkg = *header;
        if (!valid_package(pkg)) throw ConfigError("invalid '# @package " + *header + "' in " + quoted(file));
      }
    }

    std::map<std::string, Choice> local;  // this file's `override` entries
    std::vector<Entry> entries = parse_defaults(content, file, group, pkg, local);
    if (primary) entries.insert(entries.end(), appended_.begin(), appended_.end());
    if (std::none_of(entries.begin(), entries.end(), [](const Entry& e) { return e.kind == Entry::Kind::Self; }))
      entries.push_back(Entry{});  // own keys last: they override the defaults

    stack_.push_back(id);
    stack_names_.push_back(file.string());
    scopes.push_back(&local);
    for (const Entry& e : entries) {
      switch (e.kind) {
        case Entry::Kind::Self:
          merge_at(pkg, content);
          break;
        case Entry::Kind::Config: {
          auto path = roots_.find_file(e.option);
          if (!path) throw ConfigError("In " + quoted(file) + ": could not find config '" + e.option + "' (looked for " + e.option + ".yaml in the search path)");
          compose_file(*path, group, pkg, true, scopes, false);
          break;
        }
        case Entry::Kind::Group:
          compose_group(e, file, scopes);
          break;
      }
    }
    scopes.pop_back();
    stack_.pop_back();
    stack_names_.pop_back();
    for (const auto& [key, choice] : local) {
      if (!choice.used)
        throw ConfigError("In " + quoted(file) + ": could not override '" + key +
                          "': no match in the defaults list below it");
    }
  }

  void compose_group(const Entry& e, const fs::path& file, std::vector<std::map<std::string, Choice>*>& scopes) {
    if (e.from_command_line) {
      auto c = cmd_.find(e.key);
      if (c != cmd_.end() && c->second.op == Override::Op::ForceAdd && c->second.used) return;
      auto it = seen_.find(e.key);
      if (it != seen_.end())
        throw ConfigError("Could not append to the defaults list: " + e.origin + " adds '" + e.key + "', which " +
                          it->second + " already sets. Use " + e.key + "=" + e.option + " to change it");
    }
    auto [it, fresh] = seen_.emplace(e.key, e.from_command_line ? e.origin : quoted(file));
    if (!fresh)
      throw ConfigError("In " + quoted(file) + ": config group '" + e.key + "' is already in the defaults list (from " +
                        it->second + "). To change a choice made there, write '- override " + e.key + ": " +
                        (e.option.empty() ? "null" : e.option) + "'");
    std::string option = e.option;
    std::string origin = e.from_command_line ? e.origin : quoted(file);
    // Precedence: command line, then the outermost file's `override` entries.
    Choice* chosen = nullptr;
    if (!e.from_command_line) {
      auto c = cmd_.find(e.key);
      if (c != cmd_.end() && c->second.op != Override::Op::Add) chosen = &c->second;
      if (c != cmd_.end() && c->second.op == Override::Op::Add)
        throw ConfigError("Could not append to the defaults list: " + c->second.origin + " adds '" + e.key + "', which " +
                          quoted(file) + " already sets. Use " + e.key + "=" + c->second.option + " to change it");
      // Every matching `override` entry counts as used, even when an outer one wins.
      for (auto* scope : scopes) {
        auto s = scope->find(e.key);
        if (s == scope->end()) continue;
        s->second.used = true;
        if (!chosen) chosen = &s->second;
      }
    }
    if (chosen) {
      chosen->used = true;
      if (chosen->op == Override::Op::Delete) {
        if (!chosen->option.empty() && chosen->option != option)
          throw ConfigError("Could not delete '" + e.key + "' from the defaults list (" + chosen->origin +
                            "): its option is '" + (option.empty() ? "null" : option) + "', not '" + chosen->option + "'");
        option.clear();
      } else {
        option = chosen->option;
      }
      origin = chosen->origin;
    }
    if (option.empty()) return;  // null: the group is left out
    if (!roots_.is_group(e.group)) {
      if (e.optional) return;
      std::vector<std::string> groups;
      for (const auto& [g, opts] : roots_.groups()) groups.push_back(g);
      std::string near = suggest(e.group, groups);
      throw ConfigError("In " + origin + ": could not find config group '" + e.group + "'" +
                        (near.empty() ? "" : " (did you mean '" + near + "'?)") + ". Available groups: " +
                        join_names(groups));
    }
    auto path = roots_.find_file(e.group + "/" + option);
    if (!path) {
      if (e.optional) return;
      std::vector<std::string> opts = roots_.options(e.group);
      std::string near = suggest(option, opts);
      throw ConfigError("In " + origin + ": could not find option '" + option + "' of config group '" + e.group +
                        "'" + (near.empty() ? "" : " (did you mean '" + near + "'?)") +
                        ". Available options: " + join_names(opts));
    }
    choices[e.key] = option;
    compose_file(*path, e.group, e.package, e.explicit_package, scopes, false);
  }

  std::vector<Entry> parse_defaults(Value& content, const fs::path& file, const std::string& group,
                                    const std::string& pkg, std::map<std::string, Choice>& local) {
    std::vector<Entry> entries;
    Value* defaults = content.find("defaults");
    if (!defaults) return entries;
    Value list = *defaults;
    content.erase("defaults");
    if (list.is_null()) return entries;
    const std::string where = "In " + quoted(file) + ": ";
    if (!list.is_list()) throw ConfigError(where + "'defaults' must be a list, got " + detail::describe_value(list));
    bool self_seen = false;
    for (size_t i = 0; i < list.list.size(); ++i) {
      const Value& item = list.list[i];
      const std::string at = where + "defaults[" + std::to_string(i) + "]";
      if (item.is_scalar() && detail::kind_of(item) == detail::Kind::String) {
        Entry e;
        if (item.text == "_self_") {
          if (self_seen) throw ConfigError(at + ": _self_ appears twice");
          self_seen = true;
          entries.push_back(e);
          continue;
        }
        std::string name = item.text;
        bool absolute = !name.empty() && name[0] == '/';
        if (absolute) name = name.substr(1);
        if (!valid_name(name)) throw ConfigError(at + ": invalid config name '" + item.text + "'");
        e.kind = Entry::Kind::Config;
        e.option = absolute || group.empty() ? name : group + "/" + name;
        entries.push_back(e);
        continue;
      }
      if (!item.is_map() || item.map.size() != 1)
        throw ConfigError(at + ": expected 'group: option', a config name or _self_, got " +
                          detail::flow(item));
      std::string key = item.map[0].first;
      const Value& value = item.map[0].second;
      bool is_override = false, optional = false;
      if (key.compare(0, 9, "override ") == 0) is_override = true, key = key.substr(9);
      else if (key.compare(0, 9, "optional ") == 0) optional = true, key = key.substr(9);
      key.erase(0, key.find_first_not_of(' '));
      std::string option;
      if (value.is_scalar()) option = value.text;
      else if (!value.is_null())
        throw ConfigError(at + ": the option of '" + key + "' must be a name or null, got " + detail::describe_value(value));
      if (!option.empty() && !valid_name(option))
        throw ConfigError(at + ": invalid option name '" + option + "' for '" + key + "'");

      Entry e;
      e.kind = Entry::Kind::Group;
      e.option = option;
      e.optional = optional;
      std::string group_part = key, pkg_part;
      size_t at_sign = key.find('@');
      if (at_sign != std::string::npos) {
        group_part = key.substr(0, at_sign);
        pkg_part = key.substr(at_sign + 1);
        e.explicit_package = true;
      }
      bool absolute = !group_part.empty() && group_part[0] == '/';
      if (absolute) group_part = group_part.substr(1);
      if (!valid_name(group_part) || group_part.find('.') != std::string::npos)
        throw ConfigError(at + ": invalid config group '" + key + "'");
      e.group = absolute || group.empty() ? group_part : group + "/" + group_part;
      const std::string relative = absolute ? dotted(group_part) : detail::join_key(pkg, dotted(group_part));
      if (e.explicit_package) {
        if (pkg_part == "_global_") e.package = "";
        else if (pkg_part.compare(0, 9, "_global_.") == 0) e.package = pkg_part.substr(9);
        else if (pkg_part == "_group_") e.package = relative;
        else e.package = detail::join_key(pkg, pkg_part);
        if (!valid_package(e.package)) throw ConfigError(at + ": invalid package in '" + key + "'");
      } else {
        e.package = relative;
      }
      e.key = e.package == dotted(e.group) ? e.group : e.group + "@" + e.package;
      if (is_override) {
        Choice c;
        c.op = Override::Op::Set;
        c.option = option;
        c.origin = quoted(file);
        local[e.key] = c;
        continue;
      }
      entries.push_back(e);
    }
    return entries;
  }

  void merge_at(const std::string& package, const Value& content) {
    Value* node = &result;
    if (!package.empty()) {
      for (const auto& seg : detail::split(package, '.')) {
        Value* next = node->find(seg);
        if (!next || !next->is_map()) next = &node->set(seg, Value::make_map());
        node = next;
      }
    }
    detail::merge_into(*node, content);
  }

  const SearchRoots& roots_;
  std::map<std::string, Choice>& cmd_;
  std::vector<Entry> appended_;
  std::map<std::string, std::string> seen_;  // choice key -> where it was set
  std::vector<std::string> stack_, stack_names_;
  size_t files_loaded_ = 0;
};

std::string group_key_of(const std::string& key, std::string* group, std::string* package) {
  size_t at = key.find('@');
  *group = key.substr(0, at);
  *package = at == std::string::npos ? dotted(*group) : key.substr(at + 1);
  if (*package == "_global_") *package = "";
  return package->empty() || *package != dotted(*group) ? *group + "@" + *package : *group;
}

/// The command line sorted: group choices steer the defaults tree (`appended`: groups added
/// with + / ++), key overrides apply to the composed tree afterwards.
struct SortedOverrides {
  std::map<std::string, Choice> choices;
  std::vector<Entry> appended;
  std::vector<Override> keys;
};

/// One command-line group override (`model=x`, `+model=x`, `~model`) into `sorted`.
void add_group_choice(const std::string& text, const Override& o, SortedOverrides& sorted) {
  Choice c;
  c.op = o.op;
  c.origin = "override '" + text + "'";
  if (o.has_value) {
    if (!o.value.is_null() && !o.value.is_scalar())
      throw ConfigError("Override '" + text + "': config group '" + o.key + "' takes an option name, got " +
                        detail::describe_value(o.value));
    c.option = o.value.is_null() ? "" : o.value.text;
    if (!c.option.empty() && !valid_name(c.option))
      throw ConfigError("Override '" + text + "': invalid option name '" + c.option + "'");
  }
  const bool adds = o.op == Override::Op::Add || o.op == Override::Op::ForceAdd;
  if (adds && c.option.empty())
    throw ConfigError("Override '" + text + "': adding a config group needs an option (" + o.prefix() + o.key +
                      "=OPTION)");
  std::string g, pkg;
  std::string key = group_key_of(o.key, &g, &pkg);
  if (!valid_name(g) || !valid_package(pkg))
    throw ConfigError("Override '" + text + "': invalid config group '" + o.key + "'");
  sorted.choices[key] = c;  // the last one given wins
  if (!adds) return;
  Entry e;
  e.kind = Entry::Kind::Group;
  e.group = g;
  e.option = c.option;
  e.package = pkg;
  e.explicit_package = o.key.find('@') != std::string::npos;
  e.key = key;
  e.from_command_line = true;
  e.origin = c.origin;
  auto& appended = sorted.appended;
  appended.erase(std::remove_if(appended.begin(), appended.end(), [&](const Entry& x) { return x.key == key; }),
                 appended.end());
  appended.push_back(e);
}

SortedOverrides sort_overrides(const std::vector<std::string>& overrides, const SearchRoots& roots) {
  SortedOverrides sorted;
  for (const auto& text : overrides) {
    Override o = parse_override(text);
    if (o.is_sweep())
      throw ConfigError("Override '" + text + "' is a sweep (comma-separated values): quote it (" + o.key + "='" +
                        o.value_texts.front() + ",...'), make it a list (" + o.key + "=[...]) or run it with -m");
    if (o.names_group() || (o.key.find('.') == std::string::npos && roots.is_group(o.key)))
      add_group_choice(text, o, sorted);
    else
      sorted.keys.push_back(std::move(o));
  }
  return sorted;
}

}  // namespace

Composed compose(const ComposeRequest& request) {
  const std::time_t now = request.now != 0 ? request.now : std::time(nullptr);
  SearchRoots roots(request.recipe, request.search_path);
  SortedOverrides sorted = sort_overrides(request.overrides, roots);
  auto& cmd = sorted.choices;
  const auto& key_overrides = sorted.keys;

  // `++group=opt` changes the choice when the tree has the group, else appends it: the
  // appended entries come last in the primary's defaults list, so by then we know which.
  Composer composer(roots, cmd, sorted.appended);
  composer.primary_source = request.recipe_text;
  composer.compose_primary(request.recipe);

  for (const auto& [key, c] : cmd) {
    if (c.used || c.op == Override::Op::Add || c.op == Override::Op::ForceAdd) continue;
    if (c.op == Override::Op::Delete)
      throw ConfigError("Could not delete '" + key + "' from the defaults list (" + c.origin + "): no such entry");
    throw ConfigError("Could not override '" + key + "' (" + c.origin +
                      "): no match in the defaults list. To append to your defaults list use +" + key + "=" +
                      (c.option.empty() ? "OPTION" : c.option));
  }

  Value tree = std::move(composer.result);
  if (!request.schema_yaml.empty()) {
    Value base = detail::load_yaml_text(request.schema_yaml, "<schema defaults>");
    detail::merge_into(base, tree);
    tree = std::move(base);
  }
  for (const auto& o : key_overrides) apply_override(tree, o);
  detail::resolve(tree, now);
  if (detail::depth(tree) > detail::kMaxDepth)
    throw ConfigError("composed config is nested deeper than " + std::to_string(detail::kMaxDepth) + " levels");

  Composed out;
  out.config = detail::to_yaml(tree);
  out.recipe_text = composer.primary_text;
  out.overrides = request.overrides;
  out.choices = composer.choices;
  out.now = now;
  return out;
}

std::map<std::string, std::vector<std::string>> list_groups(const fs::path& recipe,
                                                            const std::vector<fs::path>& search_path) {
  return SearchRoots(recipe, search_path).groups();
}

}  // namespace retort::config
