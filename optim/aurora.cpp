#include <blockopt/optim/aurora.h>
#include <blockopt/optim/detail/matrix_optimizer.h>
#include <blockopt/optim/muon.h>

#include <cmath>

namespace blockopt::optim {

AuroraOptions::AuroraOptions(double lr) : lr_(lr) {}

void AuroraParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum_buffer);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(master_param);
}

void AuroraParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, momentum_buffer);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, master_param);
}

Aurora::Aurora(const NamedParameters& named_params, AuroraOptions defaults, RoutingRule rule)
    : Aurora(detail::routed_param_groups(named_params, defaults, rule), defaults) {}

Aurora::Aurora(std::vector<torch::optim::OptimizerParamGroup> param_groups,
               AuroraOptions defaults)
    : torch::optim::Optimizer(std::move(param_groups), std::make_unique<AuroraOptions>(defaults)) {
  defaults.validate();
  detail::validate_matrix_groups<AuroraOptions>(*this, "Aurora");
}

torch::Tensor aurora_polar(const torch::Tensor& direction, const AuroraOptions& options) {
  const auto polar = [&](const torch::Tensor& x) {
    return newton_schulz(x, options.polar_steps(), NsEpsMode::add,
                         ns_compute_dtype(options.ns_dtype()), NsCoefficients::simple)
        .to(direction.scalar_type());
  };
  if (direction.size(0) == direction.size(1)) return polar(direction);
  const bool wide = direction.size(0) < direction.size(1);
  const auto tall = wide ? direction.t() : direction;  // T, (m, n) with m > n
  const double m = static_cast<double>(tall.size(0)), n = static_cast<double>(tall.size(1));
  const double eps = options.eps();
  auto scale = tall.norm(2, /*dim=*/1, /*keepdim=*/true).clamp_min(eps).reciprocal();  // s, (m, 1)
  torch::Tensor ortho;
  for (int64_t k = 0; k < options.pp_iterations(); ++k) {
    ortho = polar(scale * tall);  // O = polar(diag(s) T), (m, n)
    if (k + 1 == options.pp_iterations()) break;
    const auto row_sq = ortho.square().sum(1, /*keepdim=*/true).clamp_min(eps * eps);
    scale = scale * (row_sq.reciprocal() * (n / m)).pow(options.pp_beta());  // toward n/m
  }
  return wide ? ortho.t() : ortho;
}

namespace {
void check_aurora_state(const AuroraParamState& state, const torch::Tensor& param,
                        const AuroraOptions& options, const detail::ParamSlot& slot) {
  detail::check_fallback_state(state, param, options, "Aurora", slot);
  detail::check_state_tensor(state.momentum_buffer(), "momentum_buffer", param.numel(),
                             detail::state_dtype(param, options.float32_state()), param,
                             "Aurora", slot);
}
}  // namespace

torch::Tensor Aurora::step(LossClosure closure) {
  const torch::Tensor loss = detail::evaluate_closure(closure);
  torch::NoGradGuard no_grad;
  detail::step_matrix_optimizer<AuroraParamState, AuroraOptions>(
      *this, "Aurora", check_aurora_state,
      [](torch::Tensor& param, const torch::Tensor& grad, AuroraParamState& state,
         const AuroraOptions& options) {
        const auto direction =
            muon_momentum(grad, state.momentum_buffer(), options.momentum(), options.nesterov());
        const auto ortho = aurora_polar(as_matrix(direction), options).to(param.scalar_type());
        const double shape = muon_scale(MuonScale::original, ortho.size(0), ortho.size(1));
        param.mul_(1.0 - options.lr() * options.weight_decay());
        param.add_(ortho.reshape(param.sizes()), -options.lr() * shape);
      });
  return loss;
}

void Aurora::save(torch::serialize::OutputArchive& archive) const {
  save_state_and_options<AuroraParamState, AuroraOptions>(archive, *this);
}

void Aurora::load(torch::serialize::InputArchive& archive) {
  detail::load_matrix_optimizer<AuroraParamState, AuroraOptions>(archive, *this, "Aurora",
                                                                 check_aurora_state);
}

}  // namespace blockopt::optim
