#pragma once
// Muon: momentum, then Newton-Schulz orthogonalisation of the (rows, cols) update.
//   B <- mu B + (1-mu) G ;  D = (1-mu) G + mu B (nesterov) or B
//   W <- W (1 - lr wd) - lr s(rows, cols) NS(D)
// Non-matrix tensors (by name, routing.h) run the AdamW fallback.
#include <blockopt/optim/common.h>
#include <blockopt/optim/newton_schulz.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <string>
#include <tuple>
#include <vector>

namespace blockopt::optim {

// One Options type for matrix and fallback groups (torch::optim::serialize needs one type):
// in a fallback group (use_fallback) lr/weight_decay are the AdamW ones, copied from
// fallback_lr/fallback_weight_decay by the named-parameter constructor.
struct MuonOptions : public torch::optim::OptimizerCloneableOptions<MuonOptions> {
  MuonOptions(double lr = 0.02);  // NOLINT(google-explicit-constructor): mirrors torch::optim
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
  TORCH_ARG(std::string, ns_eps_mode) = "add";  // add | clamp
  TORCH_ARG(std::string, scale) = "original";   // original | match_rms_adamw | none
  TORCH_ARG(std::string, ns_dtype) = "";        // "" (parameter dtype) | bfloat16
  TORCH_ARG(bool, use_fallback) = false;
  TORCH_ARG(double, fallback_lr) = 3e-4;
  TORCH_ARG(betas_t, fallback_betas) = std::make_tuple(0.9, 0.95);
  TORCH_ARG(double, fallback_eps) = 1e-10;
  TORCH_ARG(double, fallback_weight_decay) = 0.0;
  // bf16/fp16 parameters: state and a master copy of the parameter in float32.
  TORCH_ARG(bool, float32_state) = true;

 public:
};

struct MuonParamState : public torch::optim::OptimizerCloneableParamState<MuonParamState>,
                        public StateTensors {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, momentum_buffer);  // matrix groups: B
  TORCH_ARG(torch::Tensor, exp_avg);          // fallback groups: m
  TORCH_ARG(torch::Tensor, exp_avg_sq);       // fallback groups: v
  TORCH_ARG(torch::Tensor, master_param);     // float32 copy of a bf16/fp16 parameter

 public:
  void serialize(torch::serialize::OutputArchive& archive) const override;
  void serialize(torch::serialize::InputArchive& archive) override;
  std::vector<torch::Tensor> state_tensors() const override {
    return {momentum_buffer(), exp_avg(), exp_avg_sq(), master_param()};
  }
};

class Muon : public torch::optim::Optimizer {
 public:
  // Routes by name: matrix group + AdamW fallback group.
  Muon(const NamedParameters& named_params, MuonOptions defaults = {}, RoutingRule rule = {});
  // Explicit groups; each group's options say whether it is a fallback group.
  Muon(std::vector<torch::optim::OptimizerParamGroup> param_groups, MuonOptions defaults = {});

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

// D = nesterov ? (1-mu) G + mu B : B, after B <- mu B + (1-mu) G (B created on first use).
torch::Tensor muon_momentum(const torch::Tensor& grad, torch::Tensor& buffer, double momentum,
                            bool nesterov);

// O = NS(D) (rows, cols) after the momentum above, cast back to the parameter's dtype (also
// after a bf16 Newton-Schulz). Shared by Muon and NorMuon, whose options both carry the
// momentum and ns_* fields.
template <typename Options>
torch::Tensor orthogonalised_momentum(const torch::Tensor& param, const torch::Tensor& grad,
                                      torch::Tensor& buffer, const Options& options) {
  auto direction = muon_momentum(grad, buffer, options.momentum(), options.nesterov());
  return newton_schulz(as_matrix(direction), options.ns_steps(), options.ns_eps_mode(),
                       ns_compute_dtype(options.ns_dtype()))
      .to(param.scalar_type());
}

// Shape factor s(rows, cols) for `scale`: original sqrt(max(1, rows/cols)),
// match_rms_adamw 0.2 sqrt(max(rows, cols)), none 1.
double muon_scale(const std::string& scale, int64_t rows, int64_t cols);

}  // namespace blockopt::optim
