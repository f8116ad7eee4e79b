#include <blockopt/optim/common.h>
#include <blockopt/optim/fused_adam.h>

#include <cmath>
#include <stdexcept>

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

torch::Tensor evaluate_closure(const torch::optim::Optimizer::LossClosure& closure) {
  if (!closure) return {};
  torch::AutoGradMode enable_grad(true);
  return closure();
}

void require(bool ok, const std::string& optimizer, const std::string& what) {
  if (!ok) throw std::invalid_argument(optimizer + ": " + what);
}

void check_lr(double lr, const std::string& optimizer) {
  require(std::isfinite(lr) && lr >= 0.0, optimizer,
          "learning rate must be finite and >= 0, got " + std::to_string(lr));
}

void check_beta(double beta, const std::string& name, const std::string& optimizer) {
  require(beta >= 0.0 && beta < 1.0, optimizer,
          name + " must be in [0, 1), got " + std::to_string(beta));
}

void check_non_negative(double value, const std::string& name, const std::string& optimizer) {
  require(std::isfinite(value) && value >= 0.0, optimizer,
          name + " must be finite and >= 0, got " + std::to_string(value));
}

void check_finite_grad(const torch::Tensor& grad, const std::string& optimizer) {
  if (!all_finite(grad)) {
    throw std::runtime_error(optimizer + ": gradient contains NaN or Inf (parameter of shape " +
                             c10::str(grad.sizes()) + "); step refused, state left unchanged");
  }
}

}  // namespace blockopt::optim
