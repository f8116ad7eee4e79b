#include <blockopt/optim/matrix_optimizer.h>
#include <blockopt/optim/muon.h>
#include <blockopt/optim/newton_schulz.h>

#include <cmath>

namespace blockopt::optim {

MuonOptions::MuonOptions(double lr) : lr_(lr) {}

void MuonOptions::validate() const {
  const std::string name = "Muon";
  check_lr(lr(), name);
  check_beta(momentum(), "momentum", name);
  check_non_negative(weight_decay(), "weight_decay", name);
  require(ns_steps() >= 0, name, "ns_steps must be >= 0");
  require(ns_eps_mode() == "add" || ns_eps_mode() == "clamp", name,
          "ns_eps_mode must be add or clamp, got '" + ns_eps_mode() + "'");
  require(scale() == "original" || scale() == "match_rms_adamw" || scale() == "none", name,
          "scale must be original, match_rms_adamw or none, got '" + scale() + "'");
  require(ns_dtype().empty() || ns_dtype() == "bfloat16", name,
          "ns_dtype must be empty or bfloat16, got '" + ns_dtype() + "'");
  validate_fallback_options(*this, name);
}

void MuonOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(nesterov);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(ns_steps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(ns_eps_mode);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(scale);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(ns_dtype);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(use_fallback);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(fallback_lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(fallback_betas);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(fallback_eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(fallback_weight_decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(float32_state);
}

void MuonOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, momentum);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, nesterov);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, ns_steps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(std::string, ns_eps_mode);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(std::string, scale);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(std::string, ns_dtype);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, use_fallback);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, fallback_lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(betas_t, fallback_betas);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, fallback_eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, fallback_weight_decay);
  BLOCKOPT_DESERIALIZE_OPTIONAL_ARG(bool, float32_state);
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

double muon_scale(const std::string& scale, int64_t rows, int64_t cols) {
  if (scale == "original") {
    return std::sqrt(std::max(1.0, static_cast<double>(rows) / static_cast<double>(cols)));
  }
  if (scale == "match_rms_adamw") return 0.2 * std::sqrt(static_cast<double>(std::max(rows, cols)));
  return 1.0;
}

Muon::Muon(const NamedParameters& named_params, MuonOptions defaults, RoutingRule rule)
    : Muon(routed_param_groups(named_params, defaults, rule), defaults) {}

Muon::Muon(std::vector<torch::optim::OptimizerParamGroup> param_groups, MuonOptions defaults)
    : torch::optim::Optimizer(std::move(param_groups), std::make_unique<MuonOptions>(defaults)) {
  defaults.validate();
  validate_matrix_groups<MuonOptions>(*this, "Muon");
}

namespace {
void check_muon_state(const MuonParamState& state, const torch::Tensor& param,
                      const MuonOptions& options, const ParamSlot& slot) {
  check_fallback_state(state, param, options, "Muon", slot);
  check_state_tensor(state.momentum_buffer(), "momentum_buffer", param.numel(),
                     state_dtype(param, options.float32_state()), param, "Muon", slot);
}
}  // namespace

torch::Tensor Muon::step(LossClosure closure) {
  const torch::Tensor loss = evaluate_closure(closure);
  torch::NoGradGuard no_grad;
  step_matrix_optimizer<MuonParamState, MuonOptions>(
      *this, "Muon", check_muon_state,
      [](torch::Tensor& param, const torch::Tensor& grad, MuonParamState& state,
         const MuonOptions& options) {
        auto ortho = orthogonalised_momentum(param, grad, state.momentum_buffer(), options);  // (rows, cols)
        const double s = muon_scale(options.scale(), ortho.size(0), ortho.size(1));
        param.mul_(1.0 - options.lr() * options.weight_decay());
        param.add_(ortho.reshape(param.sizes()), -options.lr() * s);
      });
  return loss;
}

void Muon::save(torch::serialize::OutputArchive& archive) const {
  save_state_and_options<MuonParamState, MuonOptions>(archive, *this);
}

void Muon::load(torch::serialize::InputArchive& archive) {
  load_matrix_optimizer<MuonParamState, MuonOptions>(archive, *this, "Muon", check_muon_state);
}

}  // namespace blockopt::optim
