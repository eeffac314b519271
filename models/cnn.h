#pragma once
/// CNN family: stages of (3x3 conv [+ batch norm] + ReLU) x convs_per_stage, each stage
/// ending in a 2x2 max-pool; then flatten (or global average) and fully connected layers.
/// Hidden states: each stage's pooled output [B, C, H, W], then each fc layer's [B, D].
/// Parameter names (stage0.conv0.weight, stage0.bn0.running_mean, fc0.weight,
/// head.weight) match bench/reference/models.py, so exported weights load in PyTorch.
#include "models/model.h"

namespace retort::models {

class Cnn : public Model {
 public:
  explicit Cnn(ModelOptions options);
  Output forward(const torch::Tensor& x) override;
  std::vector<std::string> hidden_names() const override;
  std::vector<std::string> hidden_kinds() const override;

 private:
  torch::Tensor batch_norm(const torch::Tensor& x, torch::nn::BatchNorm2d& bn);
  struct Stage {
    std::shared_ptr<torch::nn::Module> holder;
    std::vector<torch::nn::Conv2d> convs;
    std::vector<torch::nn::BatchNorm2d> norms;
  };
  std::vector<Stage> stages_;
  std::vector<torch::nn::Linear> fcs_;
  torch::nn::Linear head_{nullptr};
};

/// MLP family: flatten, fully connected hidden layers with ReLU (hidden state each), head.
class Mlp : public Model {
 public:
  explicit Mlp(ModelOptions options);
  Output forward(const torch::Tensor& x) override;
  std::vector<std::string> hidden_names() const override;
  std::vector<std::string> hidden_kinds() const override;

 private:
  std::vector<torch::nn::Linear> fcs_;
  torch::nn::Linear head_{nullptr};
};

}  // namespace retort::models
