#include <blockopt/models/cnn.h>

#include <numeric>

namespace blockopt::models {

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

torch::nn::GroupNorm norm(int64_t channels) {
  return torch::nn::GroupNorm(std::gcd(channels, int64_t{8}), channels);
}

// Multiply-adds x 2 of a k x k convolution producing (out, size, size).
int64_t conv_flops(int64_t in, int64_t out, int64_t kernel, int64_t size) {
  return 2 * kernel * kernel * in * out * size * size;
}

}  // namespace

ResidualBlockImpl::ResidualBlockImpl(int64_t in, int64_t out, int64_t stride) {
  conv1 = register_module("conv1", conv(in, out, 3, stride));
  norm1 = register_module("norm1", norm(out));
  conv2 = register_module("conv2", conv(out, out, 3, 1));
  norm2 = register_module("norm2", norm(out));
  if (stride != 1 || in != out) shortcut = register_module("shortcut", conv(in, out, 1, stride));
}

torch::Tensor ResidualBlockImpl::forward(const torch::Tensor& x) {
  auto y = torch::relu(norm1(conv1(x)));
  y = norm2(conv2(y));
  return torch::relu(y + (shortcut ? shortcut(x) : x));
}

CNN::CNN(CNNOptions options) : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.in_channels() > 0 && o.image_size() > 0 && o.classes() > 1 &&
                  o.channels() > 0 && o.stages() > 0 && o.blocks() > 0,
              "cnn: in_channels, image_size, channels, stages, blocks must be positive and "
              "classes > 1");
  auto size = o.image_size();
  stem = register_module("stem", conv(o.in_channels(), o.channels(), 3, 1));
  stem_norm = register_module("stem_norm", norm(o.channels()));
  flops_ += conv_flops(o.in_channels(), o.channels(), 3, size);
  stages = register_module("stages", torch::nn::Sequential());
  auto width = o.channels();
  for (int64_t s = 0; s < o.stages(); ++s) {
    for (int64_t b = 0; b < o.blocks(); ++b) {
      const bool down = s > 0 && b == 0;
      const auto out = down ? 2 * width : width;
      if (down) size = (size + 1) / 2;  // 3x3, padding 1, stride 2
      stages->push_back(ResidualBlock(width, out, down ? 2 : 1));
      flops_ += conv_flops(width, out, 3, size) + conv_flops(out, out, 3, size);
      if (down) flops_ += conv_flops(width, out, 1, size);
      width = out;
    }
  }
  fc = register_module("fc", torch::nn::Linear(width, o.classes()));
  flops_ += 2 * width * o.classes();
}

torch::Tensor CNN::forward(const torch::Tensor& inputs) {
  const auto& o = options_;
  auto x = inputs.dim() == 2
               ? inputs.view({inputs.size(0), o.in_channels(), o.image_size(), o.image_size()})
               : inputs;                              // (B, C, H, W)
  x = stages->forward(torch::relu(stem_norm(stem(x))));
  return fc(x.mean({2, 3}));                          // global average pool (B, C') -> (B, classes)
}

}  // namespace blockopt::models
