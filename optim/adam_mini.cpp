#include <blockopt/optim/adam_mini.h>
#include <blockopt/optim/adamw.h>
#include <blockopt/optim/fused_adam.h>

#include <cmath>

namespace blockopt::optim {

AdamMiniOptions::AdamMiniOptions(double lr) : lr_(lr) {}

void AdamMiniParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(master_param);
}

void AdamMiniParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, master_param);
}

namespace {
std::vector<torch::Tensor> values(const NamedParameters& named_params) {
  std::vector<torch::Tensor> params;
  for (const auto& item : named_params) params.push_back(item.value());
  return params;
}

AdamMiniOptions with_partition_name(AdamMiniOptions options, bool custom) {
  if (custom) options.partition(AdamMiniPartition::custom);
  options.validate();
  return options;
}
}  // namespace

AdamMini::AdamMini(const NamedParameters& named_params, AdamMiniOptions defaults,
                   PartitionRule custom_rule)
    : torch::optim::Optimizer({torch::optim::OptimizerParamGroup(values(named_params))},
                              std::make_unique<AdamMiniOptions>(
                                  with_partition_name(defaults, custom_rule != nullptr))),
      named_params_(named_params),
      custom_rule_(std::move(custom_rule)),
      partition_(make_partition(param_infos(named_params),
                                custom_rule_ ? custom_rule_
                                             : partition_rule(enum_name(defaults.partition()),
                                                              defaults.head_dim()))) {}

std::string AdamMini::partition_summary() const {
  return optim::partition_summary(partition_, param_infos(named_params_));
}

std::vector<std::string> AdamMini::partition_warnings() const {
  return optim::partition_warnings(partition_, param_infos(named_params_));
}

void adam_mini_update_reference(torch::Tensor& param, const torch::Tensor& grad,
                                AdamMiniParamState& state, const AdamMiniOptions& options,
                                const BlockLayout& layout) {
  const int64_t block = layout.block_size;
  const int64_t blocks = param.numel() / block;
  if (!state.exp_avg().defined()) {
    state.exp_avg(torch::zeros_like(param, torch::MemoryFormat::Contiguous));
    state.exp_avg_sq(torch::zeros({blocks}, param.options()));
  }
  const double lr = options.lr();
  const double weight_decay = layout.weight_decay ? options.weight_decay() : 0.0;
  const auto [beta1, beta2] = options.betas();
  state.step(state.step() + 1);
  if (block == 1) {  // one element per block: exactly the AdamW rule (and its op order)
    auto exp_avg_sq = state.exp_avg_sq().view(param.sizes());  // (blocks,) as param shape
    adam_update(param, grad, state.exp_avg(), exp_avg_sq, state.step(), lr, beta1, beta2,
                options.eps(), weight_decay);
    return;
  }
  const auto t = static_cast<double>(state.step());

  param.mul_(1.0 - lr * weight_decay);
  state.exp_avg().mul_(beta1).add_(grad, 1.0 - beta1);
  // v_B <- b2 v_B + mean_B((1-b2) g g)
  auto block_mean_sq = grad.mul(1.0 - beta2).mul_(grad).reshape({blocks, block}).mean(1);
  state.exp_avg_sq().mul_(beta2).add_(block_mean_sq);
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
  // denom_B = sqrt(v_B) / sqrt(1 - b2^t) + eps, (blocks, 1)
  auto denom = (state.exp_avg_sq().sqrt() / bias_correction2_sqrt).add_(options.eps()).unsqueeze(1);
  param.view({blocks, block})
      .addcdiv_(state.exp_avg().view({blocks, block}), denom, -lr / bias_correction1);
}

void AdamMini::check_state(const AdamMiniParamState& state, const torch::Tensor& param,
                           const AdamMiniOptions& options, const detail::ParamSlot& slot,
                           const Partition& partition) const {
  const std::string name = "Adam-mini";
  if (slot.group != 0 || slot.index >= partition.layouts.size()) {
    throw std::invalid_argument(name + ": the partition covers the constructor's parameters only "
                                "(add_param_group is not supported); " + slot.name() + " has none");
  }
  const auto& layout = partition.layouts[slot.index];
  const auto dtype = detail::state_dtype(param, options.float32_state());
  detail::check_state_tensor(state.exp_avg(), "exp_avg", param.numel(), dtype, param, name, slot);
  detail::check_state_tensor(state.exp_avg_sq(), "exp_avg_sq", param.numel() / layout.block_size, dtype,
                     param, name, slot);
  detail::check_state_tensor(state.master_param(), "master_param", param.numel(), torch::kFloat, param,
                     name, slot);
}

torch::Tensor AdamMini::step(LossClosure closure) {
  const torch::Tensor loss = detail::evaluate_closure(closure);
  torch::NoGradGuard no_grad;
  detail::require(param_groups_.size() == 1 && param_groups_[0].params().size() == partition_.layouts.size(),
          "Adam-mini",
          "the partition covers the constructor's parameters only (add_param_group is not "
          "supported)");
  detail::step_each_parameter<AdamMiniParamState, AdamMiniOptions>(
      *this, "Adam-mini",
      [this](const AdamMiniParamState& state, const torch::Tensor& param,
             const AdamMiniOptions& options, const detail::ParamSlot& slot) {
        check_state(state, param, options, slot, partition_);
      },
      [this](torch::Tensor& param, const torch::Tensor& grad, AdamMiniParamState& state,
             const AdamMiniOptions& options, const detail::ParamSlot& slot) {
        const auto& layout = partition_.layouts[slot.index];
        if (!fused_ || !fused_adam_supported(param, grad)) {
          adam_mini_update_reference(param, grad, state, options, layout);
          return;
        }
        if (!state.exp_avg().defined()) {
          state.exp_avg(torch::zeros_like(param, torch::MemoryFormat::Contiguous));
          state.exp_avg_sq(torch::zeros({param.numel() / layout.block_size}, param.options()));
        }
        state.step(state.step() + 1);
        const auto [beta1, beta2] = options.betas();
        fused_adam_update(param, grad, state.exp_avg(), state.exp_avg_sq(), layout.block_size,
                          state.step(), options.lr(), beta1, beta2, options.eps(),
                          layout.weight_decay ? options.weight_decay() : 0.0);
      });
  return loss;
}

void AdamMini::save(torch::serialize::OutputArchive& archive) const {
  save_state_and_options<AdamMiniParamState, AdamMiniOptions>(archive, *this);
}

void AdamMini::load(torch::serialize::InputArchive& archive) {
  // The loaded options name the partition: rebuild it, then check the state against it.
  detail::load_state_and_options<AdamMiniParamState, AdamMiniOptions>(archive, *this, [this] {
    const auto& options = static_cast<const AdamMiniOptions&>(param_groups_.at(0).options());
    options.validate();
    const bool custom = options.partition() == AdamMiniPartition::custom;
    detail::require(!custom || custom_rule_ != nullptr, "Adam-mini",
            "the checkpoint uses a custom partition; construct the optimizer with that rule");
    auto partition = make_partition(
        param_infos(named_params_),
        custom ? custom_rule_ : partition_rule(enum_name(options.partition()), options.head_dim()));
    detail::check_every_state<AdamMiniParamState, AdamMiniOptions>(
        *this, [&](const AdamMiniParamState& state, const torch::Tensor& param,
                   const AdamMiniOptions& group_options, const detail::ParamSlot& slot) {
          check_state(state, param, group_options, slot, partition);
        });
    partition_ = std::move(partition);
  });
}

}  // namespace blockopt::optim
