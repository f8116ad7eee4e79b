#pragma once
// Internal to the optimizers: option checks, the checked step over every parameter, and
// save/load that round-trips per-parameter state *and* param-group options.
#include <blockopt/optim/detail/compat.h>
#include <blockopt/optim/state.h>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::optim::detail {

// The loss of an optimizer step's closure, evaluated with grad enabled; undefined when there
// is no closure. Every step() calls it before its NoGradGuard.
torch::Tensor evaluate_closure(const torch::optim::Optimizer::LossClosure& closure);

// Throws std::invalid_argument("<optimizer>: <what>") when `ok` is false.
void require(bool ok, const std::string& optimizer, const std::string& what);
void check_lr(double lr, const std::string& optimizer);
void check_beta(double beta, const std::string& name, const std::string& optimizer);
void check_non_negative(double value, const std::string& name, const std::string& optimizer);
void check_positive(double value, const std::string& name, const std::string& optimizer);

// A parameter's place in an optimizer: its group and its index in the group.
struct ParamSlot {
  size_t group;
  size_t index;
  const torch::Tensor* param;
  // "parameter 3 of group 0 (shape [4, 5], BFloat16)", for errors (built only on failure).
  std::string name() const;
};

// Throws unless `grad` can update `param`: dense, same numel, dtype and device, and finite
// (an update from NaN/Inf would silently corrupt the parameter and the optimizer state).
void check_grad(const torch::Tensor& param, const std::string& optimizer, const ParamSlot& slot);

// bf16 and fp16: parameters whose updates are computed in float32 by default.
bool is_low_precision(const torch::Tensor& tensor);

// The dtype of a parameter's optimizer state: float32 for a low-precision parameter when
// `float32_state`, the parameter's dtype otherwise.
torch::ScalarType state_dtype(const torch::Tensor& param, bool float32_state);

// Throws unless the state tensor `what` (when defined) holds `numel` elements of `dtype` on
// the parameter's device; a mismatch comes from a checkpoint of another model or
// configuration, and the fused loops would read and write out of bounds.
void check_state_tensor(const torch::Tensor& state, const std::string& what, int64_t numel,
                        torch::ScalarType dtype, const torch::Tensor& param,
                        const std::string& optimizer, const ParamSlot& slot);

// What one parameter's update works on: `work` is contiguous, in the state dtype, and is
// either the parameter itself or a copy (a float32 master copy of a low-precision parameter,
// kept in `master`; a contiguous copy of a non-contiguous parameter). `grad` matches `work`.
struct UpdateTarget {
  torch::Tensor work;
  torch::Tensor grad;
};

// NOTE: the master copy is re-synchronised from the parameter whenever the parameter no
// longer equals the rounded master (it was changed outside the optimizer, e.g. by a model
// load); after a checkpoint load the loaded master is kept, so a resume is bit-identical.
UpdateTarget begin_update(const torch::Tensor& param, torch::Tensor& master, bool float32_state);

// Writes a copied `work` back into the parameter and bumps the parameter's autograd version
// (the fused loops write through data_ptr), so a graph that saved it raises the in-place error.
void finish_update(torch::Tensor& param, const UpdateTarget& target);

// Runs `check_state(state, param, options, slot)` on every parameter that has state (after
// load(), and before every step).
template <typename State, typename Options, typename CheckState>
void check_every_state(const torch::optim::Optimizer& optimizer, CheckState check_state) {
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& options = static_cast<const Options&>(groups[g].options());
    const auto& params = groups[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto found = optimizer.state().find(state_key(params[i]));
      if (found == optimizer.state().end()) continue;
      check_state(static_cast<const State&>(*found->second), params[i], options,
                  ParamSlot{g, i, &params[i]});
    }
  }
}

// One step over every parameter with a gradient. First every gradient (check_grad) and every
// existing state (check_every_state) is checked, so that a refused step changes nothing;
// then `update(work, grad, state, options, slot)` runs on each non-empty parameter through
// begin_update/finish_update.
template <typename State, typename Options, typename CheckState, typename Update>
void step_each_parameter(torch::optim::Optimizer& optimizer, const std::string& name,
                         CheckState check_state, Update update) {
  auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& params = groups[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i].grad().defined()) check_grad(params[i], name, ParamSlot{g, i, &params[i]});
    }
  }
  check_every_state<State, Options>(optimizer, check_state);
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& options = static_cast<const Options&>(groups[g].options());
    auto& params = groups[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      auto& param = params[i];
      if (!param.grad().defined() || param.numel() == 0) continue;  // nothing to update
      auto& entry = optimizer.state()[state_key(param)];
      if (!entry) entry = std::make_unique<State>();
      auto& state = static_cast<State&>(*entry);
      auto target = begin_update(param, state.master_param(), options.float32_state());
      update(target.work, target.grad, state, options, ParamSlot{g, i, &param});
      finish_update(param, target);
    }
  }
}

// Inside Options::serialize(InputArchive&): reads an option that older checkpoints lack
// (absent: the option keeps its default).
#define BLOCKOPT_DESERIALIZE_OPTIONAL_ARG(T, name)          \
  {                                                         \
    c10::IValue ivalue;                                     \
    if (archive.try_read(#name, ivalue)) name(ivalue.to<T>()); \
  }

// The load() of every blockopt optimizer. The state is cleared first (a parameter without
// saved state starts fresh); then `validate()` checks the loaded optimizer (options, state
// shapes against the live parameters). When anything fails, the previous state and options
// are restored and the error is rethrown.
template <typename ParamState, typename Options, typename Validate>
void load_state_and_options(torch::serialize::InputArchive& archive,
                            torch::optim::Optimizer& optimizer, Validate validate) {
  auto& groups = optimizer.param_groups();
  auto previous_state = std::move(optimizer.state());
  optimizer.state().clear();
  std::vector<std::unique_ptr<torch::optim::OptimizerOptions>> previous_options;
  for (const auto& group : groups) previous_options.push_back(group.options().clone());
  try {
    read_state_and_options<ParamState, Options>(archive, optimizer);
    validate();
  } catch (...) {
    optimizer.state() = std::move(previous_state);
    for (size_t i = 0; i < groups.size(); ++i) groups[i].set_options(std::move(previous_options[i]));
    throw;
  }
}

}  // namespace blockopt::optim::detail
