#pragma once
// What every blockopt ParamState offers: its tensors, for reporting the optimizer's memory.
#include <torch/torch.h>

#include <vector>

namespace blockopt::optim {

// Base of every blockopt ParamState: lists its tensors so state size can be reported.
class StateTensors {
 public:
  virtual ~StateTensors() = default;
  virtual std::vector<torch::Tensor> state_tensors() const = 0;
};

// Bytes held in optimizer state (blockopt states and torch::optim::Adam/AdamW states).
int64_t state_bytes(const torch::optim::Optimizer& optimizer);

}  // namespace blockopt::optim
