#pragma once
/// ONNX export (opset 17, fp32) of the cnn, mlp, vit and gpt families: each family's forward
/// in eval mode (no dropout; batch norm from its running statistics) as an ONNX graph over
/// the model's weights, computing the same logits. What ONNX Runtime serves and TensorRT
/// builds engines from; `retort export <run> model.onnx` writes it.
///   models::save_onnx("model.onnx", *model, {{"retort.step", "1200"}});
///
/// Input "input": images float32 [batch, C, H, W], normalized as retort's loader does
/// ((pixel / 255 - mean) / stddev); for a gpt, token ids int64 [batch, tokens], tokens at
/// most model.context. Output "logits": float32 [batch, classes]; for a gpt [batch, tokens,
/// vocab]. batch and tokens are dynamic axes.
///
/// Built with models/onnx_graph.h; each family is one emitter in onnx_export.cpp (input
/// value in, logits value out) made of the layer helpers there, which read every weight
/// through one function, where a quantized (QDQ) export would put its DequantizeLinear.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "models/model.h"

namespace retort::models {

/// The families (model.name) that have an ONNX emitter, sorted.
std::vector<std::string> onnx_families();

/// The .onnx file's bytes; `metadata` goes into its metadata_props. ConfigError naming
/// model.name and the families exported for a model of another family.
std::string onnx_model_bytes(const Model& model, const std::map<std::string, std::string>& metadata = {});

/// Writes onnx_model_bytes atomically (temporary file, fsync, rename).
void save_onnx(const std::filesystem::path& path, const Model& model,
               const std::map<std::string, std::string>& metadata = {});

}  // namespace retort::models
