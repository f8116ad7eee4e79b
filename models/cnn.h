#pragma once
// Small ResNet-like CNN for images: 3x3 stem, `stages` stages of `blocks` residual blocks
// (two 3x3 convs, GroupNorm, ReLU; the first block of each later stage halves the resolution
// and doubles the width, with a 1x1 projection shortcut), global average pool, linear head.
// GroupNorm instead of BatchNorm: no running statistics, so train/eval and Hessian probes
// see the same function. Names: stem.weight, stem_norm.*, stages.<k>.conv1.weight, ...,
// fc.weight/bias.
#include <blockopt/models/model.h>

namespace blockopt::models {

struct CNNOptions {
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;  // square inputs
  TORCH_ARG(int64_t, classes) = 10;
  TORCH_ARG(int64_t, channels) = 16;  // width of the first stage
  TORCH_ARG(int64_t, stages) = 3;
  TORCH_ARG(int64_t, blocks) = 1;  // residual blocks per stage

 public:
};

class ResidualBlockImpl : public torch::nn::Module {
 public:
  ResidualBlockImpl(int64_t in, int64_t out, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);  // (B, in, H, W) -> (B, out, H/s, W/s)

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, shortcut{nullptr};  // shortcut optional
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
};
TORCH_MODULE(ResidualBlock);

class CNN : public Model {
 public:
  explicit CNN(CNNOptions options);
  // (B, C, H, W) images, or (B, C*H*W) flattened -> (B, classes) logits.
  torch::Tensor forward(const torch::Tensor& inputs) override;
  int64_t flops_per_item() const override { return flops_; }  // convolutions and head
  const CNNOptions& options() const { return options_; }

 private:
  CNNOptions options_;
  torch::nn::Conv2d stem{nullptr};
  torch::nn::GroupNorm stem_norm{nullptr};
  torch::nn::Sequential stages{nullptr};
  torch::nn::Linear fc{nullptr};
  int64_t flops_ = 0;
};

}  // namespace blockopt::models
