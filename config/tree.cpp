// The YAML::Node side of the API: parse, emit, hash, first_difference, expand_sweep.
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
