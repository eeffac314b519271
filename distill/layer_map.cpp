#include "distill/layer_map.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/text.h"

namespace retort::distill {
namespace {

struct Ref {
  std::string text;  // as written, for messages
  std::optional<int64_t> index;
};

std::string flow(const YAML::Node& node) {
  YAML::Emitter e;
  e.SetMapFormat(YAML::Flow);
  e.SetSeqFormat(YAML::Flow);
  e << node;
  return e.c_str();
}

Ref make_ref(const std::string& text) {
  Ref r{text, std::nullopt};
  size_t pos = 0;
  try {
    const long long v = std::stoll(text, &pos);
    if (pos == text.size()) r.index = v;
  } catch (const std::exception&) {
    // not an integer: a layer name
  }
  return r;
}

int64_t resolve_ref(const Ref& ref, const std::vector<std::string>& names, const char* side, const std::string& key) {
  const auto n = static_cast<int64_t>(names.size());
  if (ref.index) {
    const int64_t i = *ref.index < 0 ? *ref.index + n : *ref.index;
    if (i < 0 || i >= n)
      throw ConfigError(key + ": " + side + " layer " + ref.text + " is out of range; the " + side + " has " +
                        std::to_string(n) + " (" + join(names) + "; indices 0.." + std::to_string(n - 1) +
                        ", or negative from the end)");
    return i;
  }
  auto it = std::find(names.begin(), names.end(), ref.text);
  if (it == names.end())
    throw ConfigError(key + ": the " + std::string(side) + " has no layer named '" + ref.text + "' (its layers: " +
                      join(names) + ")");
  return static_cast<int64_t>(it - names.begin());
}

// "a:b" -> (a, b), spaces around either side trimmed.
std::pair<std::string, std::string> split_pair_text(const std::string& text) {
  const auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw ConfigError("entry '" + text + "' is not a pair; write [student, teacher] or student:teacher");
  auto trim = [](std::string s) {
    s.erase(0, s.find_first_not_of(" \t"));
    s.erase(s.find_last_not_of(" \t") + 1);
    return s;
  };
  return {trim(text.substr(0, colon)), trim(text.substr(colon + 1))};
}

std::string scalar_text(const YAML::Node& n, const std::string& entry) {
  if (!n.IsScalar()) throw ConfigError("in " + entry + ", expected a layer index or name, got " + flow(n));
  return n.Scalar();
}

const char* const kFormHelp = "; expected last, uniform, a list of [student, teacher] pairs, or a map {student: teacher}";

std::vector<std::pair<std::string, std::string>> list_pairs(const YAML::Node& list) {
  if (list.size() == 0) throw ConfigError(std::string("the list of layer pairs is empty") + kFormHelp);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (size_t e = 0; e < list.size(); ++e) {
    const YAML::Node item = list[e];
    const std::string entry = "entry " + std::to_string(e) + " (" + flow(item) + ")";
    if (item.IsScalar())
      pairs.push_back(split_pair_text(item.Scalar()));
    else if (item.IsSequence() && item.size() == 2)
      pairs.emplace_back(scalar_text(item[0], entry), scalar_text(item[1], entry));
    else
      throw ConfigError(entry + " is not a [student, teacher] pair");
  }
  return pairs;
}

std::vector<std::pair<std::string, std::string>> map_pairs(const YAML::Node& map) {
  if (map.size() == 0) throw ConfigError(std::string("the map of layer pairs is empty") + kFormHelp);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& kv : map) {
    const std::string k = scalar_text(kv.first, "a key");
    // `{stage0:stage1}` (no space) is YAML for the key "stage0:stage1" with no value.
    if (!kv.second.IsDefined() || kv.second.IsNull())
      pairs.push_back(split_pair_text(k));
    else
      pairs.emplace_back(k, scalar_text(kv.second, "the value of " + k));
  }
  return pairs;
}

}  // namespace

LayerMap parse_layer_map(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return LayerMap::last();
  if (node.IsScalar()) {
    const std::string s = node.Scalar();
    if (s == "last") return LayerMap::last();
    if (s == "uniform") return LayerMap::uniform();
    if (s.find(':') != std::string::npos) return {LayerMap::Form::kPairs, {split_pair_text(s)}};
    throw ConfigError("unknown layer map '" + s + "'" + kFormHelp);
  }
  if (node.IsSequence()) return {LayerMap::Form::kPairs, list_pairs(node)};
  if (node.IsMap()) return {LayerMap::Form::kPairs, map_pairs(node)};
  throw ConfigError("got " + flow(node) + kFormHelp);
}

YAML::Node layer_map_yaml(const LayerMap& map) {
  if (map.form == LayerMap::Form::kLast) return YAML::Node("last");
  if (map.form == LayerMap::Form::kUniform) return YAML::Node("uniform");
  YAML::Node list(YAML::NodeType::Sequence);
  for (const auto& [s, t] : map.pairs) {
    YAML::Node pair(YAML::NodeType::Sequence);
    pair.push_back(s);
    pair.push_back(t);
    list.push_back(pair);
  }
  return list;
}

int64_t uniform_teacher_layer(int64_t i, int64_t student_layers, int64_t teacher_layers) {
  if (student_layers < 1 || teacher_layers < 1 || i < 0 || i >= student_layers)
    throw Error("uniform_teacher_layer: layer " + std::to_string(i) + " of " + std::to_string(student_layers) +
                " student / " + std::to_string(teacher_layers) + " teacher layers");
  // round((i+1) * Lt / Ls) with halves rounded up, in integers so no float rounding decides.
  const int64_t rounded = (2 * (i + 1) * teacher_layers + student_layers) / (2 * student_layers);
  return std::clamp<int64_t>(rounded - 1, 0, teacher_layers - 1);
}

std::vector<LayerPair> resolve_layer_map(const LayerMap& map, const std::vector<std::string>& student_names,
                                         const std::vector<std::string>& teacher_names, const std::string& key) {
  const auto ls = static_cast<int64_t>(student_names.size()), lt = static_cast<int64_t>(teacher_names.size());
  if (ls == 0 || lt == 0)
    throw ConfigError(key + ": the " + std::string(ls == 0 ? "student" : "teacher") +
                      " has no layers to map; set this term's weight to 0");
  std::vector<std::pair<int64_t, int64_t>> idx;
  switch (map.form) {
    case LayerMap::Form::kLast: idx.emplace_back(ls - 1, lt - 1); break;
    case LayerMap::Form::kUniform:
      for (int64_t i = 0; i < ls; ++i) idx.emplace_back(i, uniform_teacher_layer(i, ls, lt));
      break;
    case LayerMap::Form::kPairs:
      for (const auto& [s, t] : map.pairs)
        idx.emplace_back(resolve_ref(make_ref(s), student_names, "student", key),
                         resolve_ref(make_ref(t), teacher_names, "teacher", key));
      break;
  }
  std::set<std::pair<int64_t, int64_t>> seen;
  std::map<int64_t, int> uses;
  for (const auto& p : idx) {
    if (!seen.insert(p).second)
      throw ConfigError(key + ": the pair " + student_names[p.first] + " -> " + teacher_names[p.second] +
                        " is listed twice");
    ++uses[p.first];
  }
  std::vector<LayerPair> out;
  for (const auto& [s, t] : idx) {
    LayerPair p{s, t, student_names[s]};
    if (uses[s] > 1) p.name += "-" + teacher_names[t];
    out.push_back(p);
  }
  return out;
}

}  // namespace retort::distill
