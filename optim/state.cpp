#include <blockopt/optim/state.h>

namespace blockopt::optim {

namespace {
int64_t tensor_bytes(const torch::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}
}  // namespace

int64_t state_bytes(const torch::optim::Optimizer& optimizer) {
  int64_t bytes = 0;
  for (const auto& entry : optimizer.state()) {
    const auto* state = entry.second.get();
    if (const auto* ours = dynamic_cast<const StateTensors*>(state)) {
      for (const auto& t : ours->state_tensors()) bytes += tensor_bytes(t);
    } else if (const auto* adamw = dynamic_cast<const torch::optim::AdamWParamState*>(state)) {
      bytes += tensor_bytes(adamw->exp_avg()) + tensor_bytes(adamw->exp_avg_sq()) +
               tensor_bytes(adamw->max_exp_avg_sq());
    } else if (const auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(state)) {
      bytes += tensor_bytes(adam->exp_avg()) + tensor_bytes(adam->exp_avg_sq()) +
               tensor_bytes(adam->max_exp_avg_sq());
    }
  }
  return bytes;
}

}  // namespace blockopt::optim
