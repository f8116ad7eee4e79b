#include <blockopt/optim/detail/step.h>
#include <blockopt/optim/fused_adam.h>

#include <cmath>
#include <stdexcept>

namespace blockopt::optim::detail {

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

void check_positive(double value, const std::string& name, const std::string& optimizer) {
  require(std::isfinite(value) && value > 0.0, optimizer,
          name + " must be finite and > 0, got " + std::to_string(value));
}

std::string ParamSlot::name() const {
  return c10::str("parameter ", index, " of group ", group, " (shape ", param->sizes(), ", ",
                  param->scalar_type(), ")");
}

void check_grad(const torch::Tensor& param, const std::string& optimizer, const ParamSlot& slot) {
  const auto& grad = param.grad();
  if (grad.is_sparse()) {
    throw std::invalid_argument(optimizer + ": sparse gradients are not supported (" + slot.name() +
                                "); use a dense gradient, e.g. an Embedding without sparse=true");
  }
  if (grad.numel() != param.numel() || grad.scalar_type() != param.scalar_type() ||
      grad.device() != param.device()) {
    throw std::invalid_argument(c10::str(optimizer, ": the gradient of ", slot.name(), " has shape ",
                                         grad.sizes(), ", dtype ", grad.scalar_type(), " and device ",
                                         grad.device(), "; expected the parameter's"));
  }
  if (!all_finite(grad)) {
    throw std::runtime_error(optimizer + ": gradient contains NaN or Inf (" + slot.name() +
                             "); step refused, state left unchanged");
  }
}

bool is_low_precision(const torch::Tensor& tensor) {
  return tensor.scalar_type() == torch::kBFloat16 || tensor.scalar_type() == torch::kHalf;
}

torch::ScalarType state_dtype(const torch::Tensor& param, bool float32_state) {
  return float32_state && is_low_precision(param) ? torch::kFloat : param.scalar_type();
}

void check_state_tensor(const torch::Tensor& state, const std::string& what, int64_t numel,
                        torch::ScalarType dtype, const torch::Tensor& param,
                        const std::string& optimizer, const ParamSlot& slot) {
  if (!state.defined() || (state.numel() == numel && state.scalar_type() == dtype &&
                           state.device() == param.device())) {
    return;
  }
  throw std::invalid_argument(c10::str(
      optimizer, ": state '", what, "' of ", slot.name(), " holds ", state.numel(), " elements of ",
      state.scalar_type(), " on ", state.device(), ", expected ", numel, " elements of ", dtype,
      " on ", param.device(), " (state from another model or optimizer configuration?)"));
}

UpdateTarget begin_update(const torch::Tensor& param, torch::Tensor& master, bool float32_state) {
  const auto dtype = state_dtype(param, float32_state);
  if (dtype != param.scalar_type()) {
    // float32 master copy of a low-precision parameter
    if (!master.defined()) {
      master = param.to(dtype, /*non_blocking=*/false, /*copy=*/true, torch::MemoryFormat::Contiguous);
    } else if (!param.equal(master.to(param.scalar_type()))) {
      master.copy_(param);  // changed outside the optimizer: follow the parameter
    }
    return {master, param.grad().to(dtype).contiguous()};
  }
  master = torch::Tensor();
  return {param.is_contiguous() ? param : param.contiguous(), param.grad().contiguous()};
}

void finish_update(torch::Tensor& param, const UpdateTarget& target) {
  if (!target.work.is_same(param)) {
    param.copy_(target.work);
  } else {
    param.unsafeGetTensorImpl()->bump_version();
  }
}

}  // namespace blockopt::optim::detail
