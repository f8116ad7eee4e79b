#include <blockopt/optim/detail/matrix_optimizer.h>
#include <blockopt/optim/muon.h>
#include <blockopt/optim/newton_schulz.h>

#include <cmath>

namespace blockopt::optim {

MuonOptions::MuonOptions(double lr) : lr_(lr) {}

MuonOptions MuonOptions::torch_compat() {
  return MuonOptions(1e-3)
      .weight_decay(0.1)
      .momentum(0.95)
      .nesterov(true)
      .ns_steps(5)
      .ns_eps_mode(NsEpsMode::clamp)
      .ns_dtype(NsDtype::bfloat16)
      .ns_coefficients(NsCoefficients::jordan)
      .scale(MuonScale::original)
      .float32_state(false)
      .fallback_lr(1e-3)
      .fallback_betas(std::make_tuple(0.9, 0.999))
      .fallback_eps(1e-8)
      .fallback_weight_decay(0.01);
}

void MuonParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum_buffer);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(master_param);
}

void MuonParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, momentum_buffer);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, master_param);
}

torch::Tensor muon_momentum(const torch::Tensor& grad, torch::Tensor& buffer, double momentum,
                            bool nesterov) {
  if (!buffer.defined()) buffer = torch::zeros_like(grad, torch::MemoryFormat::Contiguous);
  buffer.lerp_(grad, 1.0 - momentum);                  // B <- mu B + (1-mu) G
  return nesterov ? grad.lerp(buffer, momentum) : buffer;  // (1-mu) G + mu B
}

torch::Tensor update_floor_factor(const torch::Tensor& weight, const torch::Tensor& update,
                                  double floor, UpdateFloorMode mode) {
  const auto norm = [mode](const torch::Tensor& matrix) {  // (rows, 1) or 0-d, clamped >= 1e-8
    return (mode == UpdateFloorMode::row ? matrix.norm(2, {1}, /*keepdim=*/true) : matrix.norm())
        .clamp_min(1e-8);
  };
  return (floor * norm(weight) / norm(update)).clamp_min(1.0);
}

void hyperball_step(torch::Tensor& param, const torch::Tensor& update, double lr) {
  const auto radius = param.norm();  // ||W||_F
  auto moved = param - update * (lr * radius / update.norm().clamp_min(1e-10));
  param.copy_(moved / moved.norm().clamp_min(1e-10) * radius);
}

double muon_scale(MuonScale scale, int64_t rows, int64_t cols) {
  if (scale == MuonScale::original) {
    return std::sqrt(std::max(1.0, static_cast<double>(rows) / static_cast<double>(cols)));
  }
  if (scale == MuonScale::match_rms_adamw) return 0.2 * std::sqrt(static_cast<double>(std::max(rows, cols)));
  return 1.0;
}

Muon::Muon(const NamedParameters& named_params, MuonOptions defaults, RoutingRule rule)
    : Muon(detail::routed_param_groups(named_params, defaults, rule), defaults) {}

Muon::Muon(std::vector<torch::optim::OptimizerParamGroup> param_groups, MuonOptions defaults)
    : torch::optim::Optimizer(std::move(param_groups), std::make_unique<MuonOptions>(defaults)) {
  defaults.validate();
  detail::validate_matrix_groups<MuonOptions>(*this, "Muon");
}

namespace {
void check_muon_state(const MuonParamState& state, const torch::Tensor& param,
                      const MuonOptions& options, const detail::ParamSlot& slot) {
  detail::check_fallback_state(state, param, options, "Muon", slot);
  detail::check_state_tensor(state.momentum_buffer(), "momentum_buffer", param.numel(),
                     detail::state_dtype(param, options.float32_state()), param, "Muon", slot);
}
}  // namespace

torch::Tensor Muon::step(LossClosure closure) {
  const torch::Tensor loss = detail::evaluate_closure(closure);
  torch::NoGradGuard no_grad;
  detail::step_matrix_optimizer<MuonParamState, MuonOptions>(
      *this, "Muon", check_muon_state,
      [](torch::Tensor& param, const torch::Tensor& grad, MuonParamState& state,
         const MuonOptions& options) {
        auto ortho = orthogonalised_momentum(param, grad, state.momentum_buffer(), options);  // (rows, cols)
        const double s = muon_scale(options.scale(), ortho.size(0), ortho.size(1));
        matrix_step(param, ortho, s, options);
      });
  return loss;
}

void Muon::save(torch::serialize::OutputArchive& archive) const {
  save_state_and_options<MuonParamState, MuonOptions>(archive, *this);
}

void Muon::load(torch::serialize::InputArchive& archive) {
  detail::load_matrix_optimizer<MuonParamState, MuonOptions>(archive, *this, "Muon", check_muon_state);
}

}  // namespace blockopt::optim
