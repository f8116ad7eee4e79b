#pragma once
// What the trainer and the Hessian probe need from a model: logits from inputs, and a
// cost estimate for throughput reporting.
#include <torch/torch.h>

#include <string>

namespace blockopt::models {

class Model : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& inputs) = 0;
  // Forward-pass FLOPs for one sample (one token for sequence models); a training step costs
  // about 3x this.
  virtual int64_t flops_per_item() const = 0;
  int64_t parameter_count() const;
  // One line per parameter: name, shape, numel.
  std::string parameter_listing() const;
};

}  // namespace blockopt::models
