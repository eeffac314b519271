#include "models/hf_gpt2.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/text.h"

namespace retort::models {
namespace {

using nlohmann::json;

constexpr int64_t kGpt2Vocab = 50257;   // GPT-2's byte-level BPE; its last id is <|endoftext|>
constexpr double kLayerNormEps = 1e-5;  // what models/gpt.cpp computes with

// One config.json's fields, each missing or null one taking GPT2Config's default.
class Gpt2Fields {
 public:
  Gpt2Fields(const json& j, const std::string& origin) : j_(j), origin_(origin) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw CheckpointError("GPT-2 config '" + origin_ + "': " + key + " " + what);
  }
  const json* find(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t size(const std::string& key) const {
    const json* v = find(key);
    if (!v || !v->is_number_integer() || v->get<int64_t>() < 1)
      fail(key, "must be a positive integer, got " + (v ? v->dump() : std::string("nothing")));
    return v->get<int64_t>();
  }
  double number(const std::string& key, double fallback) const {
    const json* v = find(key);
    if (v && !v->is_number()) fail(key, "must be a number, got " + v->dump());
    return v ? v->get<double>() : fallback;
  }
  // A flag this model computes only one way: absent or equal to `supported`.
  void require_flag(const std::string& key, bool supported, const std::string& why) const {
    const json* v = find(key);
    if (v && (!v->is_boolean() || v->get<bool>() != supported)) fail(key, "is " + v->dump() + ": " + why);
  }
  std::string text(const std::string& key, const std::string& fallback) const {
    const json* v = find(key);
    if (v && !v->is_string()) fail(key, "must be a string, got " + v->dump());
    return v ? v->get<std::string>() : fallback;
  }

 private:
  const json& j_;
  const std::string& origin_;
};

}  // namespace

std::string gpt2_config_json(const ModelOptions& o) {
  if (o.name != "gpt") throw ConfigError("model.name: a GPT-2 config.json describes a gpt model, not '" + o.name + "'");
  // GPT-2 derives the head width as n_embd / n_head; a pruned gpt may keep wider heads.
  if (o.head_dim > 0 && o.head_dim * o.heads != o.dim)
    throw ConfigError("model.head_dim: " + std::to_string(o.head_dim) + " with model.heads " +
                      std::to_string(o.heads) + " makes attention " + std::to_string(o.head_dim * o.heads) +
                      " wide, not model.dim " + std::to_string(o.dim) +
                      "; GPT-2's config.json cannot express that (its head width is n_embd / n_head), expected "
                      "model.head_dim * model.heads == model.dim");
  const json special = o.vocab_size == kGpt2Vocab ? json(kGpt2Vocab - 1) : json(nullptr);
  const json j = {
      {"architectures", json::array({"GPT2LMHeadModel"})},
      {"model_type", "gpt2"},
      {"vocab_size", o.vocab_size},
      {"n_positions", o.context},
      {"n_ctx", o.context},
      {"n_embd", o.dim},
      {"n_layer", o.depth},
      {"n_head", o.heads},
      {"n_inner", o.mlp_dim > 0 ? o.mlp_dim : 4 * o.dim},
      {"activation_function", "gelu_new"},
      {"resid_pdrop", o.dropout},
      {"embd_pdrop", o.dropout},
      {"attn_pdrop", o.dropout},
      {"layer_norm_epsilon", kLayerNormEps},
      {"initializer_range", 0.02},
      {"scale_attn_weights", true},
      {"scale_attn_by_inverse_layer_idx", false},
      {"reorder_and_upcast_attn", false},
      {"tie_word_embeddings", true},
      {"use_cache", true},
      {"bos_token_id", special},
      {"eos_token_id", special},
  };
  return j.dump(2) + "\n";
}

void write_gpt2_config(const std::filesystem::path& file, const ModelOptions& options) {
  write_file_atomic(file, gpt2_config_json(options));
}

ModelOptions parse_gpt2_config(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw CheckpointError("GPT-2 config '" + origin + "': not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw CheckpointError("GPT-2 config '" + origin + "': expected a JSON object");
  const Gpt2Fields f(j, origin);
  const std::string type = f.text("model_type", "");
  if (type != "gpt2") f.fail("model_type", "must be \"gpt2\", got " + (type.empty() ? "nothing" : "\"" + type + "\""));
  ModelOptions o;
  o.name = "gpt";
  o.vocab_size = f.size("vocab_size");
  o.context = f.size(f.find("n_positions") ? "n_positions" : "n_ctx");
  o.dim = f.size("n_embd");
  o.depth = f.size("n_layer");
  o.heads = f.size("n_head");
  if (o.dim % o.heads != 0)
    f.fail("n_head", std::to_string(o.heads) + " does not divide n_embd " + std::to_string(o.dim));
  o.mlp_dim = f.find("n_inner") ? f.size("n_inner") : 0;
  o.dropout = f.number("resid_pdrop", 0.1);
  if (o.dropout < 0 || o.dropout >= 1) f.fail("resid_pdrop", "must be in [0, 1), got " + format_number(o.dropout));
  const std::string activation = f.text("activation_function", "gelu_new");
  if (activation != "gelu_new" && activation != "gelu_pytorch_tanh")
    f.fail("activation_function", "is \"" + activation + "\": the gpt model computes GPT-2's tanh GELU (gelu_new)");
  const double eps = f.number("layer_norm_epsilon", kLayerNormEps);
  if (std::abs(eps - kLayerNormEps) > 1e-12)
    f.fail("layer_norm_epsilon", "is " + format_number(eps) + ": the gpt model's layer norms use 1e-5");
  f.require_flag("scale_attn_weights", true, "the gpt model scales attention scores by 1/sqrt(head dim)");
  f.require_flag("scale_attn_by_inverse_layer_idx", false, "the gpt model does not scale scores by layer");
  f.require_flag("add_cross_attention", false, "the gpt model is decoder-only, without cross-attention");
  f.require_flag("tie_word_embeddings", true, "the gpt model ties its output projection to the token embedding");
  return o;
}

ModelOptions read_gpt2_config(const std::filesystem::path& path) {
  const bool folder = std::filesystem::is_directory(path);
  const auto file = folder ? path / "config.json" : path;
  if (!std::filesystem::is_regular_file(file))
    throw CheckpointError("GPT-2 config '" + file.string() + "' not found" +
                          (folder ? " (a Hugging Face GPT-2 folder has config.json beside model.safetensors)"
                                  : ": expected a config.json or a folder holding one"));
  return parse_gpt2_config(read_file(file), file.string());
}

}  // namespace retort::models
