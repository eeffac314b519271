#pragma once
/// Hugging Face GPT-2's config.json (transformers' GPT2Config), both ways: a gpt model's
/// options as the config GPT2LMHeadModel.from_pretrained reads beside model.safetensors
/// (`retort export` of a gpt run writes it), and a GPT-2 checkpoint folder's config as model
/// options, so that folder loads as a retort model or teacher.
///   models::write_gpt2_config(dir / "config.json", options);
///   auto options = models::read_gpt2_config(dir);      // dir/config.json, or the file itself
///   auto model = models::make_model(options);
///   models::load_weights(*model, models::load_safetensors(dir / "model.safetensors").tensors, ...);
#include <filesystem>
#include <string>

#include "models/model.h"

namespace retort::models {

/// The GPT2Config JSON of a gpt model: vocab_size, n_positions (and n_ctx), n_embd, n_layer,
/// n_head, n_inner, gelu_new, the three dropouts (model.dropout), layer_norm_epsilon 1e-5,
/// tied embeddings; bos/eos 50256 for GPT-2's 50257-token vocabulary (null otherwise).
/// ConfigError naming model.name when the options are not a gpt's, and model.head_dim when
/// heads * head_dim is not dim (GPT-2 cannot express that; a pruned gpt may have it).
std::string gpt2_config_json(const ModelOptions& options);
/// Writes it atomically.
void write_gpt2_config(const std::filesystem::path& file, const ModelOptions& options);

/// A gpt model's options from GPT2Config JSON (n_inner null: 4 * n_embd; dropout: resid_pdrop).
/// CheckpointError naming `origin` and the field for a model_type other than gpt2, a missing
/// or ill-typed size, or a variant this model does not compute (another activation,
/// layer_norm_epsilon other than 1e-5, unscaled or layer-scaled attention, cross-attention,
/// untied embeddings).
ModelOptions parse_gpt2_config(const std::string& json, const std::string& origin);
/// Reads `path`, a config.json or a folder holding one; CheckpointError naming it when absent.
ModelOptions read_gpt2_config(const std::filesystem::path& path);

}  // namespace retort::models
