#include <blockopt/models/mlp.h>

#include <cmath>
#include <stdexcept>

namespace blockopt::models {

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::ReLU;
  if (name == "tanh") return Activation::Tanh;
  if (name == "gelu") return Activation::GELU;
  throw std::invalid_argument("unknown activation '" + name + "' (expected relu, tanh or gelu)");
}

Init parse_init(const std::string& name) {
  if (name == "lecun_normal") return Init::LeCunNormal;
  if (name == "pytorch_default") return Init::PyTorchDefault;
  throw std::invalid_argument("unknown init '" + name +
                              "' (expected lecun_normal or pytorch_default)");
}

MLPOptions::MLPOptions(std::vector<int64_t> widths) : widths_(std::move(widths)) {}

MLP::MLP(MLPOptions options) : options_(std::move(options)) {
  const auto& widths = options_.widths();
  if (widths.size() < 2) throw std::invalid_argument("MLP: widths needs at least [in, out]");
  for (auto w : widths) {
    if (w <= 0) throw std::invalid_argument("MLP: every width must be positive");
  }
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    torch::nn::Linear layer(
        torch::nn::LinearOptions(widths[i], widths[i + 1]).bias(options_.bias()));
    if (options_.init() == Init::LeCunNormal) {
      torch::NoGradGuard no_grad;
      layer->weight.normal_(0.0, 1.0 / std::sqrt(static_cast<double>(widths[i])));
      if (layer->bias.defined()) layer->bias.zero_();
    }
    layers_->push_back(layer);
  }
}

torch::Tensor MLP::forward(const torch::Tensor& inputs) {
  auto x = inputs.dim() > 2 ? inputs.flatten(1) : inputs;  // images (N, C, H, W) -> (N, CHW)
  const size_t n = layers_->size();
  for (size_t i = 0; i < n; ++i) {
    x = layers_[i]->as<torch::nn::Linear>()->forward(x);
    if (i + 1 == n) break;
    switch (options_.activation()) {
      case Activation::ReLU: x = torch::relu(x); break;
      case Activation::Tanh: x = torch::tanh(x); break;
      case Activation::GELU: x = torch::gelu(x); break;
    }
  }
  return x;
}

int64_t MLP::flops_per_item() const {
  int64_t flops = 0;
  const auto& widths = options_.widths();
  for (size_t i = 0; i + 1 < widths.size(); ++i) flops += 2 * widths[i] * widths[i + 1];
  return flops;
}

}  // namespace blockopt::models
