#include <blockopt/optim/adamw.h>
#include <blockopt/optim/fused_adam.h>

#include <cmath>

namespace blockopt::optim {

AdamWOptions::AdamWOptions(double lr) : lr_(lr) {}

void AdamWParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(master_param);
}

void AdamWParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, master_param);
}

AdamW::AdamW(std::vector<torch::optim::OptimizerParamGroup> param_groups, AdamWOptions defaults)
    : torch::optim::Optimizer(std::move(param_groups),
                              std::make_unique<AdamWOptions>(defaults)) {
  defaults.validate();
  for (const auto& group : param_groups_) {
    static_cast<const AdamWOptions&>(group.options()).validate();
  }
}

AdamW::AdamW(std::vector<torch::Tensor> params, AdamWOptions defaults)
    : AdamW({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

void adam_update(torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg,
                 torch::Tensor& exp_avg_sq, int64_t step, double lr, double beta1, double beta2,
                 double eps, double weight_decay) {
  const auto t = static_cast<double>(step);
  param.mul_(1.0 - lr * weight_decay);  // decoupled decay first
  exp_avg.mul_(beta1).add_(grad, 1.0 - beta1);
  exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1.0 - beta2);
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
  const double step_size = lr / bias_correction1;
  // denom = sqrt(v) / sqrt(1 - b2^t) + eps
  auto denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps);
  param.addcdiv_(exp_avg, denom, -step_size);
}

void adamw_update_reference(torch::Tensor& param, const torch::Tensor& grad,
                            AdamWParamState& state, const AdamWOptions& options) {
  if (!state.exp_avg().defined()) {
    state.exp_avg(torch::zeros_like(param, torch::MemoryFormat::Preserve));
    state.exp_avg_sq(torch::zeros_like(param, torch::MemoryFormat::Preserve));
  }
  state.step(state.step() + 1);
  const auto [beta1, beta2] = options.betas();
  adam_update(param, grad, state.exp_avg(), state.exp_avg_sq(), state.step(), options.lr(), beta1,
              beta2, options.eps(), options.weight_decay());
}

namespace {
void check_adamw_state(const AdamWParamState& state, const torch::Tensor& param,
                       const AdamWOptions& options, const detail::ParamSlot& slot) {
  const auto dtype = detail::state_dtype(param, options.float32_state());
  detail::check_state_tensor(state.exp_avg(), "exp_avg", param.numel(), dtype, param, "AdamW", slot);
  detail::check_state_tensor(state.exp_avg_sq(), "exp_avg_sq", param.numel(), dtype, param, "AdamW", slot);
  detail::check_state_tensor(state.master_param(), "master_param", param.numel(), torch::kFloat, param,
                     "AdamW", slot);
}
}  // namespace

torch::Tensor AdamW::step(LossClosure closure) {
  const torch::Tensor loss = detail::evaluate_closure(closure);
  torch::NoGradGuard no_grad;
  detail::step_each_parameter<AdamWParamState, AdamWOptions>(
      *this, "AdamW", check_adamw_state,
      [this](torch::Tensor& param, const torch::Tensor& grad, AdamWParamState& state,
             const AdamWOptions& options, const detail::ParamSlot&) {
        if (!fused_ || !fused_adam_supported(param, grad)) {
          adamw_update_reference(param, grad, state, options);
          return;
        }
        if (!state.exp_avg().defined()) {
          state.exp_avg(torch::zeros_like(param, torch::MemoryFormat::Contiguous));
          state.exp_avg_sq(torch::zeros_like(param, torch::MemoryFormat::Contiguous));
        }
        state.step(state.step() + 1);
        const auto [beta1, beta2] = options.betas();
        fused_adam_update(param, grad, state.exp_avg(), state.exp_avg_sq(), 1, state.step(),
                          options.lr(), beta1, beta2, options.eps(), options.weight_decay());
      });
  return loss;
}

void AdamW::save(torch::serialize::OutputArchive& archive) const {
  save_state_and_options<AdamWParamState, AdamWOptions>(archive, *this);
}

void AdamW::load(torch::serialize::InputArchive& archive) {
  detail::load_state_and_options<AdamWParamState, AdamWOptions>(archive, *this, [this] {
    for (const auto& group : param_groups_) static_cast<const AdamWOptions&>(group.options()).validate();
    detail::check_every_state<AdamWParamState, AdamWOptions>(*this, check_adamw_state);
  });
}

}  // namespace blockopt::optim
