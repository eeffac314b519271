// The YAML::Node side of the API: parse, emit, hash, first_difference, describe_difference,
// expand_sweep.
#include "config/config.h"
#include "config/override.h"
#include "config/value.h"
#include "core/fs.h"

namespace retort::config {

YAML::Node parse(const std::string& yaml_text, const std::string& origin) {
  return detail::to_yaml(detail::load_yaml_text(yaml_text, origin));
}

std::string emit(const YAML::Node& node) { return detail::emit(detail::from_yaml(node, "config")); }

uint64_t hash(const YAML::Node& node) { return xxh64(emit(node)); }

std::string first_difference(const YAML::Node& a, const YAML::Node& b) {
  return detail::first_difference(detail::from_yaml(a, "config"), detail::from_yaml(b, "config"));
}

namespace {
// The value at `key` (a.b, a.b[2]) as one line of YAML, "(absent)" where there is none.
std::string value_at(const YAML::Node& root, const std::string& key) {
  YAML::Node n = YAML::Clone(root);
  auto descend = [&n](const YAML::Node& child) {
    if (!child.IsDefined()) return false;  // an absent key's node cannot be reset to
    n.reset(child);
    return true;
  };
  size_t begin = 0;
  while (begin <= key.size()) {
    size_t dot = key.find('.', begin);
    if (dot == std::string::npos) dot = key.size();
    const std::string part = key.substr(begin, dot - begin);
    begin = dot + 1;
    const size_t bracket = part.find('[');
    const std::string name = part.substr(0, bracket);
    if (!name.empty() && !(n.IsMap() && descend(static_cast<const YAML::Node&>(n)[name]))) return "(absent)";
    for (size_t at = bracket; at != std::string::npos; at = part.find('[', at + 1)) {
      const size_t i = std::stoul(part.substr(at + 1));
      if (!(n.IsSequence() && i < n.size() && descend(static_cast<const YAML::Node&>(n)[i]))) return "(absent)";
    }
  }
  if (n.IsMap() || n.IsSequence()) {  // one line: flow style
    YAML::Emitter out;
    out.SetMapFormat(YAML::Flow);
    out.SetSeqFormat(YAML::Flow);
    out << n;
    return out.c_str();
  }
  std::string s = emit(n);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
}  // namespace

std::optional<Difference> describe_difference(const YAML::Node& a, const YAML::Node& b) {
  const std::string key = first_difference(a, b);
  if (key.empty()) return std::nullopt;
  return Difference{key, value_at(a, key), value_at(b, key)};
}

std::vector<std::vector<std::string>> expand_sweep(const std::vector<std::string>& overrides) {
  // One axis per override: its values (one when it is not a sweep), as written.
  std::vector<std::vector<std::string>> axes;
  size_t runs = 1;
  for (const auto& text : overrides) {
    Override o = parse_override(text);
    std::vector<std::string> axis;
    if (!o.is_sweep()) {
      axis.push_back(text);
    } else {
      for (const auto& v : o.value_texts) axis.push_back(std::string(o.prefix()) + o.key + "=" + v);
    }
    runs *= axis.size();
    if (runs > 100000) throw ConfigError("sweep expands to more than 100000 runs");
    axes.push_back(std::move(axis));
  }
  // Row-major: the first axis changes slowest.
  std::vector<std::vector<std::string>> out;
  out.reserve(runs);
  std::vector<size_t> index(axes.size(), 0);
  for (size_t r = 0; r < runs; ++r) {
    std::vector<std::string> run;
    for (size_t a = 0; a < axes.size(); ++a) run.push_back(axes[a][index[a]]);
    out.push_back(std::move(run));
    for (size_t a = axes.size(); a-- > 0;) {
      if (++index[a] < axes[a].size()) break;
      index[a] = 0;
    }
  }
  return out;
}

}  // namespace retort::config
