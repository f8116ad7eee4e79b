#pragma once
// Fully connected net: widths [d, h_1, ..., C]; [d, C] is the (bias-free) linear model.
// Parameters are named layers.<i>.weight / layers.<i>.bias, as in the oracle cases.
#include <blockopt/models/model.h>

#include <string>
#include <vector>

namespace blockopt::models {

enum class Activation { ReLU, Tanh, GELU };
enum class Init { LeCunNormal, PyTorchDefault };

Activation parse_activation(const std::string& name);
Init parse_init(const std::string& name);

struct MLPOptions {
  MLPOptions(std::vector<int64_t> widths);  // NOLINT(google-explicit-constructor)
  TORCH_ARG(std::vector<int64_t>, widths);
  TORCH_ARG(Activation, activation) = Activation::ReLU;
  TORCH_ARG(bool, bias) = false;
  // LeCun normal: W_ij ~ N(0, 1/fan_in), biases 0 (the paper's setting).
  TORCH_ARG(Init, init) = Init::LeCunNormal;

 public:
};

class MLP : public Model {
 public:
  explicit MLP(MLPOptions options);
  torch::Tensor forward(const torch::Tensor& inputs) override;  // (N, d) or (N, ...) -> (N, C)
  int64_t flops_per_item() const override;
  const MLPOptions& options() const { return options_; }

 private:
  MLPOptions options_;
  torch::nn::ModuleList layers_;
};

}  // namespace blockopt::models
