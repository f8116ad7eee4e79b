#pragma once
// Scaffolding shared by the matrix optimizers (Muon, NorMuon, ASGO): param groups routed by
// name (routing.h), each group's Options carrying `use_fallback`; fallback groups run AdamW
// with the group's lr/weight_decay and the options' fallback_betas/fallback_eps.
#include <blockopt/optim/adamw.h>
#include <blockopt/optim/detail/step.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace blockopt::optim::detail {

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

// Throws unless the AdamW-fallback state of `param` (exp_avg, exp_avg_sq, master_param)
// matches it; `exp_avg` is also the matrix momentum of some optimizers (same shape).
template <typename State, typename Options>
void check_fallback_state(const State& state, const torch::Tensor& param, const Options& options,
                          const std::string& name, const ParamSlot& slot) {
  const auto dtype = state_dtype(param, options.float32_state());
  check_state_tensor(state.exp_avg(), "exp_avg", param.numel(), dtype, param, name, slot);
  check_state_tensor(state.exp_avg_sq(), "exp_avg_sq", param.numel(), dtype, param, name, slot);
  check_state_tensor(state.master_param(), "master_param", param.numel(), torch::kFloat, param,
                     name, slot);
}

// One step (step_each_parameter): validates every group first (a group added through
// add_param_group is checked here, since add_param_group is not virtual), counts t per
// parameter, runs AdamW on fallback groups and `matrix_update(param, grad, state, options)`
// on matrix groups.
template <typename State, typename Options, typename CheckState, typename MatrixUpdate>
void step_matrix_optimizer(torch::optim::Optimizer& optimizer, const std::string& name,
                           CheckState check_state, MatrixUpdate matrix_update) {
  validate_matrix_groups<Options>(optimizer, name);
  step_each_parameter<State, Options>(
      optimizer, name, check_state,
      [&](torch::Tensor& param, const torch::Tensor& grad, State& state, const Options& options,
          const ParamSlot&) {
        state.step(state.step() + 1);
        if (!options.use_fallback()) {
          matrix_update(param, grad, state, options);
          return;
        }
        if (!state.exp_avg().defined()) {
          state.exp_avg(torch::zeros_like(param));
          state.exp_avg_sq(torch::zeros_like(param));
        }
        const auto [beta1, beta2] = options.fallback_betas();
        adam_update(param, grad, state.exp_avg(), state.exp_avg_sq(), state.step(), options.lr(),
                    beta1, beta2, options.fallback_eps(), options.weight_decay());
      });
}

// load() of a matrix optimizer: the loaded options and state are checked like a step's.
template <typename State, typename Options, typename CheckState>
void load_matrix_optimizer(torch::serialize::InputArchive& archive,
                           torch::optim::Optimizer& optimizer, const std::string& name,
                           CheckState check_state) {
  load_state_and_options<State, Options>(archive, optimizer, [&] {
    validate_matrix_groups<Options>(optimizer, name);
    check_every_state<State, Options>(optimizer, check_state);
  });
}

}  // namespace blockopt::optim::detail
