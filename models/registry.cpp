#include <map>
#include <mutex>

#include "core/error.h"
#include "core/text.h"
#include "models/cnn.h"
#include "models/gpt.h"
#include "models/model.h"
#include "models/transformer.h"

namespace retort::models {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, ModelFactory> factories;
  Registry() {
    factories["cnn"] = [](const ModelOptions& o) { return std::make_shared<Cnn>(o); };
    factories["mlp"] = [](const ModelOptions& o) { return std::make_shared<Mlp>(o); };
    factories["vit"] = [](const ModelOptions& o) { return std::make_shared<VisionTransformer>(o); };
    factories["gpt"] = [](const ModelOptions& o) { return std::make_shared<Gpt>(o); };
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void ModelOptions::declare(config::Fields<ModelOptions>& f) {
  f.add("name", &ModelOptions::name, "architecture, by registry name (cnn, mlp, ...)");
  f.add("in_channels", &ModelOptions::in_channels, "input image channels").min(1);
  f.add("image_size", &ModelOptions::image_size, "input image side in pixels").min(1);
  f.add("num_classes", &ModelOptions::num_classes, "output classes").min(2);
  f.add("channels", &ModelOptions::channels, "cnn: channels of each stage (each ends in a 2x2 max-pool)");
  f.add("convs_per_stage", &ModelOptions::convs_per_stage, "cnn: 3x3 convolutions per stage").min(1);
  f.add("conv_channels", &ModelOptions::conv_channels,
        "cnn: output channels of each convolution, stage-major; empty: channels of its stage")
      .min(1);
  f.add("batch_norm", &ModelOptions::batch_norm, "cnn: batch norm after each convolution");
  f.add("pool", &ModelOptions::pool, "cnn: after the last stage (flatten, avg); vit: cls token or avg of tokens")
      .one_of({"flatten", "avg", "cls"});
  f.add("hidden", &ModelOptions::hidden, "widths of the fully connected hidden layers");
  f.add("dropout", &ModelOptions::dropout, "dropout after each fully connected hidden layer").min(0).less_than(1);
  f.add("patch", &ModelOptions::patch, "transformer: patch side in pixels").min(1);
  f.add("dim", &ModelOptions::dim, "transformer: model width").min(1);
  f.add("depth", &ModelOptions::depth, "transformer: layers").min(1);
  f.add("heads", &ModelOptions::heads, "transformer: attention heads").min(1);
  f.add("mlp_ratio", &ModelOptions::mlp_ratio, "vit: MLP width / model width").greater_than(0);
  f.add("vocab_size", &ModelOptions::vocab_size, "gpt: token ids in [0, vocab_size)").min(1);
  f.add("context", &ModelOptions::context, "gpt: positions, the longest sequence the model reads").min(1);
  f.add("mlp_dim", &ModelOptions::mlp_dim, "gpt: MLP width (GPT-2's n_inner); 0: 4 * dim").min(0);
  f.add("head_dim", &ModelOptions::head_dim, "gpt: width of each attention head; 0: dim / heads").min(0);
}

void register_model(const std::string& name, ModelFactory factory) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().factories[name] = std::move(factory);
}

std::vector<std::string> model_names() {
  std::lock_guard<std::mutex> lock(registry().mutex);
  std::vector<std::string> names;
  for (const auto& kv : registry().factories) names.push_back(kv.first);
  return names;
}

std::shared_ptr<Model> make_model(const ModelOptions& options) {
  ModelFactory factory;
  {
    std::lock_guard<std::mutex> lock(registry().mutex);
    auto it = registry().factories.find(options.name);
    if (it != registry().factories.end()) factory = it->second;
  }
  if (!factory) {
    throw ConfigError("model.name: unknown model '" + options.name + "' (known: " + join(model_names()) + ")");
  }
  return factory(options);
}

ModelOptions read_model_options(const YAML::Node& node, const std::string& key) {
  if (!node.IsDefined() || node.IsNull() || !node.IsMap())
    throw ConfigError(key + ": expected a map of model keys (name, channels, ...), got " +
                      (node.IsDefined() && !node.IsNull() ? "a " + std::string(node.IsSequence() ? "list" : "scalar")
                                                          : std::string("nothing")));
  if (key.empty()) {  // read at the root: messages name the model's own keys
    config::Reader reader(node);
    auto options = reader.section<ModelOptions>("");
    reader.finish();
    return options;
  }
  // Re-rooted under `key` so every message the reader gives names the full path.
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  YAML::Node tree = YAML::Clone(node);
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    YAML::Node parent(YAML::NodeType::Map);
    parent[*it] = tree;
    tree = parent;
  }
  config::Reader reader(tree);
  auto options = reader.section<ModelOptions>(key);
  reader.finish();
  return options;
}

int64_t count_parameters(const torch::nn::Module& module, bool trainable_only) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

std::vector<std::pair<std::string, torch::Tensor>> named_state(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& kv : module.named_parameters()) out.emplace_back(kv.key(), kv.value());
  for (const auto& kv : module.named_buffers()) out.emplace_back(kv.key(), kv.value());
  return out;
}

}  // namespace retort::models
