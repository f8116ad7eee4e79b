#pragma once
// Scaffolding shared by the matrix optimizers (Muon, NorMuon, ASGO): param groups routed by
// name (routing.h), each group's Options carrying `use_fallback`; fallback groups run AdamW
// with the group's lr/weight_decay and the options' fallback_betas/fallback_eps.
#include <blockopt/optim/adamw.h>
#include <blockopt/optim/common.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace blockopt::optim {

// Matrix group (defaults, use_fallback false) + fallback group (lr, weight_decay from
// fallback_lr, fallback_weight_decay; use_fallback true); empty groups are left out.
template <typename Options>
std::vector<torch::optim::OptimizerParamGroup> routed_param_groups(
    const NamedParameters& named_params, const Options& defaults, const RoutingRule& rule) {
  auto routed = route_parameters(named_params, rule);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!routed.matrix.empty()) {
    auto options = std::make_unique<Options>(defaults);
    options->use_fallback(false);
    groups.emplace_back(std::move(routed.matrix), std::move(options));
  }
  if (!routed.fallback.empty()) {
    auto options = std::make_unique<Options>(defaults);
    options->use_fallback(true).lr(defaults.fallback_lr()).weight_decay(defaults.fallback_weight_decay());
    groups.emplace_back(std::move(routed.fallback), std::move(options));
  }
  return groups;
}

// Validates every group's options; a matrix group must hold only >= 2-D tensors.
template <typename Options>
void validate_matrix_groups(const torch::optim::Optimizer& optimizer, const std::string& name) {
  for (const auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const Options&>(group.options());
    options.validate();
    if (options.use_fallback()) continue;
    for (const auto& param : group.params()) {
      require(param.dim() >= 2, name,
              "a matrix group holds a tensor of shape " + c10::str(param.sizes()) +
                  "; 1-D tensors belong in a fallback group (use_fallback)");
    }
  }
}

// One step: refuses NaN/Inf gradients before touching anything, skips undefined grads,
// counts t per parameter, runs AdamW on fallback groups and `matrix_update(param, grad,
// state, options)` on matrix groups.
template <typename State, typename Options, typename MatrixUpdate>
void step_matrix_optimizer(torch::optim::Optimizer& optimizer, const std::string& name,
                           MatrixUpdate matrix_update) {
  for (auto& group : optimizer.param_groups()) {
    for (auto& param : group.params()) {
      if (param.grad().defined()) check_finite_grad(param.grad(), name);
    }
  }
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const Options&>(group.options());
    for (auto& param : group.params()) {
      if (!param.grad().defined()) continue;
      auto& slot = optimizer.state()[c10::guts::to_string(param.unsafeGetTensorImpl())];
      if (!slot) slot = std::make_unique<State>();
      auto& state = static_cast<State&>(*slot);
      state.step(state.step() + 1);
      if (options.use_fallback()) {
        if (!state.exp_avg().defined()) {
          state.exp_avg(torch::zeros_like(param, torch::MemoryFormat::Preserve));
          state.exp_avg_sq(torch::zeros_like(param, torch::MemoryFormat::Preserve));
        }
        const auto [beta1, beta2] = options.fallback_betas();
        adam_update(param, param.grad(), state.exp_avg(), state.exp_avg_sq(), state.step(),
                    options.lr(), beta1, beta2, options.fallback_eps(), options.weight_decay());
      } else {
        matrix_update(param, param.grad(), state, options);
      }
    }
  }
}

// Checks the fallback fields every matrix optimizer's Options carries.
template <typename Options>
void validate_fallback_options(const Options& options, const std::string& name) {
  check_lr(options.fallback_lr(), name + " fallback");
  check_beta(std::get<0>(options.fallback_betas()), "fallback beta1", name);
  check_beta(std::get<1>(options.fallback_betas()), "fallback beta2", name);
  check_non_negative(options.fallback_eps(), "fallback_eps", name);
  check_non_negative(options.fallback_weight_decay(), "fallback_weight_decay", name);
}

}  // namespace blockopt::optim
