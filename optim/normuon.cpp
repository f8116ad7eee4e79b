#include <blockopt/optim/detail/matrix_optimizer.h>
#include <blockopt/optim/muon.h>
#include <blockopt/optim/newton_schulz.h>
#include <blockopt/optim/normuon.h>

#include <cmath>

namespace blockopt::optim {

NorMuonOptions::NorMuonOptions(double lr) : lr_(lr) {}

void NorMuonParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum_buffer);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(second_moment);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(master_param);
}

void NorMuonParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, momentum_buffer);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, second_moment);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, master_param);
}

NorMuon::NorMuon(const NamedParameters& named_params, NorMuonOptions defaults, RoutingRule rule)
    : NorMuon(detail::routed_param_groups(named_params, defaults, rule), defaults) {}

NorMuon::NorMuon(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                 NorMuonOptions defaults)
    : torch::optim::Optimizer(std::move(param_groups), std::make_unique<NorMuonOptions>(defaults)) {
  defaults.validate();
  detail::validate_matrix_groups<NorMuonOptions>(*this, "NorMuon");
}

namespace {
// v averages over the rows (one entry per column) of a wide matrix under reduce: shorter_axis.
bool second_moment_per_column(int64_t rows, int64_t cols, const NorMuonOptions& options) {
  return options.reduce() == NorMuonReduce::shorter_axis && rows < cols;
}

void check_normuon_state(const NorMuonParamState& state, const torch::Tensor& param,
                         const NorMuonOptions& options, const detail::ParamSlot& slot) {
  detail::check_fallback_state(state, param, options, "NorMuon", slot);
  const auto dtype = detail::state_dtype(param, options.float32_state());
  detail::check_state_tensor(state.momentum_buffer(), "momentum_buffer", param.numel(), dtype, param,
                     "NorMuon", slot);
  const int64_t rows = param.dim() >= 1 ? param.size(0) : 1;
  const int64_t cols = param.numel() / std::max<int64_t>(rows, 1);
  detail::check_state_tensor(state.second_moment(), "second_moment",
                             second_moment_per_column(rows, cols, options) ? cols : rows, dtype,
                             param, "NorMuon", slot);
}
}  // namespace

torch::Tensor NorMuon::step(LossClosure closure) {
  const torch::Tensor loss = detail::evaluate_closure(closure);
  torch::NoGradGuard no_grad;
  detail::step_matrix_optimizer<NorMuonParamState, NorMuonOptions>(
      *this, "NorMuon", check_normuon_state,
      [](torch::Tensor& param, const torch::Tensor& grad, NorMuonParamState& state,
         const NorMuonOptions& options) {
        // NOTE: O is in the parameter dtype before the v update (the official code fails with
        // fp32 parameters after a bf16 NS).
        auto ortho = orthogonalised_momentum(param, grad, state.momentum_buffer(), options);  // (rows, cols)
        const auto rows = ortho.size(0), cols = ortho.size(1);
        const bool per_column = second_moment_per_column(rows, cols, options);
        if (!state.second_moment().defined()) {
          state.second_moment(torch::zeros(per_column ? std::vector<int64_t>{1, cols}
                                                      : std::vector<int64_t>{rows, 1},
                                           param.options()));
        }
        // r, (rows, 1): mean over the columns; per column (1, cols): mean over the rows.
        auto mean_sq = ortho.square().mean(per_column ? 0 : 1, /*keepdim=*/true);
        state.second_moment().lerp_(mean_sq, 1.0 - options.beta2());  // v <- b2 v + (1-b2) r
        auto normalized = ortho / (state.second_moment().sqrt() + 1e-10);  // O'
        auto normalized_norm = normalized.norm() + 1e-10;
        torch::Tensor update;
        if (options.final_scale() == NorMuonFinalScale::preserve_norm) {
          const double shape = std::sqrt(std::max(1.0, static_cast<double>(rows) / cols));
          update = normalized * (ortho.norm() / normalized_norm * shape);
        } else {
          update = normalized * (0.2 * std::sqrt(static_cast<double>(rows * cols)) / normalized_norm);
        }
        matrix_step(param, update, 1.0, options);
      });
  return loss;
}

void NorMuon::save(torch::serialize::OutputArchive& archive) const {
  save_state_and_options<NorMuonParamState, NorMuonOptions>(archive, *this);
}

void NorMuon::load(torch::serialize::InputArchive& archive) {
  detail::load_matrix_optimizer<NorMuonParamState, NorMuonOptions>(archive, *this, "NorMuon",
                                                           check_normuon_state);
}

}  // namespace blockopt::optim
