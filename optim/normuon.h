#pragma once
// NorMuon: Muon's orthogonalised update O with a per-neuron (row) second moment.
//   r_i = mean_j O_ij^2 ;  v <- b2 v + (1-b2) r  (rows, 1), no bias correction
//   O' = O / (sqrt(v) + 1e-10)
//   preserve_norm: U = O' ||O||_F / (||O'||_F + 1e-10) sqrt(max(1, rows/cols))
//   rms:           U = O' 0.2 sqrt(rows cols) / (||O'||_F + 1e-10)
//   W <- W (1 - lr wd) - lr U
#include <blockopt/optim/common.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <string>
#include <tuple>
#include <vector>

namespace blockopt::optim {

// One Options type for matrix and fallback groups; see MuonOptions.
struct NorMuonOptions : public torch::optim::OptimizerCloneableOptions<NorMuonOptions> {
  NorMuonOptions(double lr = 0.02);  // NOLINT(google-explicit-constructor): mirrors torch::optim
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
  void serialize(torch::serialize::OutputArchive& archive) const override;
  void serialize(torch::serialize::InputArchive& archive) override;
  void validate() const;

  using betas_t = std::tuple<double, double>;
  TORCH_ARG(double, lr) = 0.02;
  TORCH_ARG(double, momentum) = 0.95;
  TORCH_ARG(bool, nesterov) = true;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(int64_t, ns_steps) = 5;
  TORCH_ARG(std::string, ns_eps_mode) = "add";          // add | clamp
  TORCH_ARG(std::string, ns_dtype) = "";                // "" (parameter dtype) | bfloat16
  TORCH_ARG(double, beta2) = 0.95;
  TORCH_ARG(std::string, final_scale) = "preserve_norm";  // preserve_norm | rms
  TORCH_ARG(bool, use_fallback) = false;
  TORCH_ARG(double, fallback_lr) = 3e-4;
  TORCH_ARG(betas_t, fallback_betas) = std::make_tuple(0.9, 0.95);
  TORCH_ARG(double, fallback_eps) = 1e-10;
  TORCH_ARG(double, fallback_weight_decay) = 0.0;
  // bf16/fp16 parameters: state and a master copy of the parameter in float32.
  TORCH_ARG(bool, float32_state) = true;

 public:
};

struct NorMuonParamState : public torch::optim::OptimizerCloneableParamState<NorMuonParamState>,
                           public StateTensors {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, momentum_buffer);  // matrix groups: B
  TORCH_ARG(torch::Tensor, second_moment);    // matrix groups: v, (rows, 1)
  TORCH_ARG(torch::Tensor, exp_avg);          // fallback groups: m
  TORCH_ARG(torch::Tensor, exp_avg_sq);       // fallback groups: v
  TORCH_ARG(torch::Tensor, master_param);     // float32 copy of a bf16/fp16 parameter

 public:
  void serialize(torch::serialize::OutputArchive& archive) const override;
  void serialize(torch::serialize::InputArchive& archive) override;
  std::vector<torch::Tensor> state_tensors() const override {
    return {momentum_buffer(), second_moment(), exp_avg(), exp_avg_sq(), master_param()};
  }
};

class NorMuon : public torch::optim::Optimizer {
 public:
  NorMuon(const NamedParameters& named_params, NorMuonOptions defaults = {}, RoutingRule rule = {});
  NorMuon(std::vector<torch::optim::OptimizerParamGroup> param_groups, NorMuonOptions defaults = {});

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

}  // namespace blockopt::optim
