#pragma once
/// Which student layer learns from which teacher layer: a LayerMap, read from the config
/// (its form checked there), resolved against the models' layer names by the dry run.
///   auto map = distill::parse_layer_map(YAML::Load("uniform"));      // ConfigError on a bad form
///   auto pairs = distill::resolve_layer_map(map, student->hidden_names(), teacher->hidden_names(),
///                                          "distill.layers");
///   // pairs[i].student, pairs[i].teacher: indices into Output.hidden
///
/// Forms of the map (as YAML):
///   last                   student's last -> teacher's last
///   uniform                student i -> teacher round((i+1) * Lt / Ls) - 1 (half rounds up;
///                          clamped to 0 when the student is more than twice as deep)
///   [[0, 1], [1, 3]]       explicit [student, teacher] pairs; indices (negative from the end)
///                          or names ([stage0, stage1]), also "stage0:stage1" strings
///   {stage0: stage1}       a map student -> teacher, by name or index
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"

namespace retort::distill {

/// A layer map as written: a form, or pairs of layer references (index or name, as text).
struct LayerMap {
  enum class Form { kLast, kUniform, kPairs };
  Form form = Form::kLast;
  std::vector<std::pair<std::string, std::string>> pairs;  ///< (student, teacher), kPairs only
  static LayerMap last() { return {}; }
  static LayerMap uniform() { return {Form::kUniform, {}}; }
};

/// The map a YAML value describes (null: last). ConfigError for another form, an empty
/// list or map, or an entry that is not a pair; the message does not name the key.
LayerMap parse_layer_map(const YAML::Node& node);
/// The YAML that parses back to `map`.
YAML::Node layer_map_yaml(const LayerMap& map);

struct LayerPair {
  int64_t student = 0;  ///< index into the student's hidden states (or attention maps)
  int64_t teacher = 0;
  /// Suffix of the loss term ("mse.<name>"): the student's layer name, or
  /// "<student>-<teacher>" when the student layer appears in more than one pair.
  std::string name;
};

/// The teacher layer that student layer i (of Ls) learns from under "uniform" (of Lt).
int64_t uniform_teacher_layer(int64_t i, int64_t student_layers, int64_t teacher_layers);

/// Resolves `map` against the layer names of both models. ConfigError naming `key`, the
/// offending entry and the valid names / range for: an unknown name, an index out of
/// range, a model without layers, a duplicate pair.
std::vector<LayerPair> resolve_layer_map(const LayerMap& map, const std::vector<std::string>& student_names,
                                         const std::vector<std::string>& teacher_names, const std::string& key);

}  // namespace retort::distill

namespace retort::config {

template <>
struct Codec<distill::LayerMap> {
  static std::string type_name() { return "layer map"; }
  static distill::LayerMap decode(const YAML::Node& node) { return distill::parse_layer_map(node); }
  static YAML::Node encode(const distill::LayerMap& map) { return distill::layer_map_yaml(map); }
};

}  // namespace retort::config
