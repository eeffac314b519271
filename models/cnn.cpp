#include "models/cnn.h"

#include "amp/ops.h"
#include "core/error.h"

namespace retort::models {
namespace {

void check_positive(const std::vector<int64_t>& values, const char* key) {
  if (values.empty()) throw ConfigError(std::string(key) + ": expected at least one width, got an empty list");
  for (int64_t v : values)
    if (v <= 0) throw ConfigError(std::string(key) + ": widths must be positive, got " + std::to_string(v));
}

torch::Tensor fc_relu_dropout(const torch::Tensor& x, torch::nn::Linear& fc, double p, bool training) {
  auto h = torch::relu(amp::linear(x, fc->weight, fc->bias));
  return p > 0 ? torch::dropout(h, p, training) : h;
}

}  // namespace

Cnn::Cnn(ModelOptions o) : Model(std::move(o)) {
  const auto& opt = options_;
  check_positive(opt.channels, "model.channels");
  if (opt.convs_per_stage < 1) throw ConfigError("model.convs_per_stage: expected >= 1, got " + std::to_string(opt.convs_per_stage));
  if (opt.pool != "flatten" && opt.pool != "avg") throw ConfigError("model.pool: expected flatten or avg, got '" + opt.pool + "'");
  const size_t convs = opt.channels.size() * static_cast<size_t>(opt.convs_per_stage);
  if (!opt.conv_channels.empty()) {
    check_positive(opt.conv_channels, "model.conv_channels");
    if (opt.conv_channels.size() != convs)
      throw ConfigError("model.conv_channels: expected " + std::to_string(convs) + " widths (" +
                        std::to_string(opt.channels.size()) + " stages x " + std::to_string(opt.convs_per_stage) +
                        " convs_per_stage), got " + std::to_string(opt.conv_channels.size()));
  }
  int64_t side = opt.image_size;
  int64_t in = opt.in_channels;
  for (size_t s = 0; s < opt.channels.size(); ++s) {
    Stage stage;
    // A holder module per stage: LibTorch refuses dotted submodule names, and the nesting
    // gives the PyTorch names stage<s>.conv<j>.weight.
    stage.holder = register_module("stage" + std::to_string(s), std::make_shared<torch::nn::Module>());
    for (int64_t j = 0; j < opt.convs_per_stage; ++j) {
      const int64_t out = opt.conv_channels.empty()
                              ? opt.channels[s]
                              : opt.conv_channels[s * static_cast<size_t>(opt.convs_per_stage) + static_cast<size_t>(j)];
      auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(!opt.batch_norm));
      stage.convs.push_back(stage.holder->register_module("conv" + std::to_string(j), conv));
      if (opt.batch_norm)
        stage.norms.push_back(stage.holder->register_module("bn" + std::to_string(j), torch::nn::BatchNorm2d(out)));
      in = out;
    }
    stages_.push_back(std::move(stage));
    if (side < 2) throw ConfigError("model.channels: " + std::to_string(opt.channels.size()) + " stages pool a " +
                                    std::to_string(opt.image_size) + "px image below 1px; use fewer stages");
    side /= 2;
  }
  int64_t features = opt.pool == "avg" ? in : in * side * side;
  for (size_t i = 0; i < opt.hidden.size(); ++i) {
    if (opt.hidden[i] <= 0) throw ConfigError("model.hidden: widths must be positive, got " + std::to_string(opt.hidden[i]));
    fcs_.push_back(register_module("fc" + std::to_string(i), torch::nn::Linear(features, opt.hidden[i])));
    features = opt.hidden[i];
  }
  head_ = register_module("head", torch::nn::Linear(features, opt.num_classes));
}

Output Cnn::forward(const torch::Tensor& input) {
  Output out;
  auto x = input;  // [B, C, H, W]
  for (auto& stage : stages_) {
    for (size_t j = 0; j < stage.convs.size(); ++j) {
      auto& conv = stage.convs[j];
      x = amp::conv2d(x, conv->weight, conv->bias, 1, 1);
      if (!stage.norms.empty()) {
        x = batch_norm(x, stage.norms[j]);
      }
      x = torch::relu(x);
    }
    x = torch::max_pool2d(x, 2);
    out.hidden.push_back(x);  // [B, C_s, H/2^s, W/2^s]
  }
  x = options_.pool == "avg" ? x.mean({2, 3}) : x.flatten(1);
  for (auto& fc : fcs_) {
    x = fc_relu_dropout(x, fc, options_.dropout, is_training());
    out.hidden.push_back(x);  // [B, D]
  }
  out.logits = amp::linear(x, head_->weight, head_->bias);
  return out;
}

torch::Tensor Cnn::batch_norm(const torch::Tensor& x, torch::nn::BatchNorm2d& bn) {
  // Functional batch norm so autocast can run its statistics in fp32; keep the PyTorch
  // buffer semantics (num_batches_tracked) for exported weights.
  const double momentum = bn->options.momentum().value_or(0.1), eps = bn->options.eps();
  if (!is_training())
    return amp::batch_norm(x, bn->running_mean, bn->running_var, bn->weight, bn->bias, false, momentum, eps);
  bn->num_batches_tracked.add_(1);
  if (batch_norm_sync())
    return amp::sync_batch_norm(x, bn->running_mean, bn->running_var, bn->weight, bn->bias, momentum, eps,
                                batch_norm_sync());
  return amp::batch_norm(x, bn->running_mean, bn->running_var, bn->weight, bn->bias, true, momentum, eps);
}

std::vector<std::string> Cnn::hidden_names() const {
  std::vector<std::string> names;
  for (size_t s = 0; s < stages_.size(); ++s) names.push_back("stage" + std::to_string(s));
  for (size_t i = 0; i < fcs_.size(); ++i) names.push_back("fc" + std::to_string(i));
  return names;
}

std::vector<std::string> Cnn::hidden_kinds() const {
  std::vector<std::string> kinds(stages_.size(), "map");
  kinds.insert(kinds.end(), fcs_.size(), "vector");
  return kinds;
}

Mlp::Mlp(ModelOptions o) : Model(std::move(o)) {
  check_positive(options_.hidden, "model.hidden");
  int64_t features = options_.in_channels * options_.image_size * options_.image_size;
  for (size_t i = 0; i < options_.hidden.size(); ++i) {
    fcs_.push_back(register_module("fc" + std::to_string(i), torch::nn::Linear(features, options_.hidden[i])));
    features = options_.hidden[i];
  }
  head_ = register_module("head", torch::nn::Linear(features, options_.num_classes));
}

Output Mlp::forward(const torch::Tensor& input) {
  Output out;
  auto x = input.flatten(1);  // [B, C*H*W]
  for (auto& fc : fcs_) {
    x = fc_relu_dropout(x, fc, options_.dropout, is_training());
    out.hidden.push_back(x);
  }
  out.logits = amp::linear(x, head_->weight, head_->bias);
  return out;
}

std::vector<std::string> Mlp::hidden_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < fcs_.size(); ++i) names.push_back("fc" + std::to_string(i));
  return names;
}

std::vector<std::string> Mlp::hidden_kinds() const { return std::vector<std::string>(fcs_.size(), "vector"); }

}  // namespace retort::models
