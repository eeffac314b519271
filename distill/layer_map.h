#pragma once
/// Which student layer learns from which teacher layer.
///   auto pairs = distill::resolve_layer_map(YAML::Load("uniform"), student->hidden_names(),
///                                          teacher->hidden_names(), "distill.layers");
///   // pairs[i].student, pairs[i].teacher: indices into Output.hidden
///
/// Forms of the map (a YAML node):
///   last                   student's last -> teacher's last
///   uniform                student i -> teacher round((i+1) * Lt / Ls) - 1 (half rounds up;
///                          clamped to 0 when the student is more than twice as deep)
///   [[0, 1], [1, 3]]       explicit [student, teacher] pairs; indices (negative from the end)
///                          or names ([stage0, stage1]), also "stage0:stage1" strings
///   {stage0: stage1}       a map student -> teacher, by name or index
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

namespace retort::distill {

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
/// offending entry and the valid names / range for: an unknown form, an unknown name, an
/// index out of range, a model without layers, an empty list, a duplicate pair.
std::vector<LayerPair> resolve_layer_map(const YAML::Node& map, const std::vector<std::string>& student_names,
                                         const std::vector<std::string>& teacher_names, const std::string& key);

}  // namespace retort::distill
