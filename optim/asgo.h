#pragma once
// ASGO: one-sided full-matrix preconditioner on G (m, n); side left if m < n else right.
//   M <- b1 M + (1-b1) G ;  P <- b2 P + (1-b2) S,  S = G G^T (m, m) or G^T G (n, n)
//   R ~ P^{-1/2} ;  U = R M (left) or M R (right)
//   U <- U rms_target sqrt(m n) / ||U||_F ;  W <- W (1 - lr wd) - lr U
// A non-finite R is replaced by I for that step, and the step is counted (nan_roots()).
#include <blockopt/optim/common.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <string>
#include <tuple>
#include <vector>

namespace blockopt::optim {

// One Options type for matrix and fallback groups; see MuonOptions. The constructor sets
// fallback_lr = lr (spec: the fallback uses ASGO's lr unless told otherwise).
struct ASGOOptions : public torch::optim::OptimizerCloneableOptions<ASGOOptions> {
  ASGOOptions(double lr = 1e-2);  // NOLINT(google-explicit-constructor): mirrors torch::optim
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
  void serialize(torch::serialize::OutputArchive& archive) const override;
  void serialize(torch::serialize::InputArchive& archive) override;
  void validate() const;

  using betas_t = std::tuple<double, double>;
  TORCH_ARG(double, lr) = 1e-2;
  TORCH_ARG(double, momentum) = 0.9;
  TORCH_ARG(double, beta2) = 0.8;
  TORCH_ARG(double, eps) = 1e-10;               // polar_express: s = 1.01 ||P + eps I||_F
  TORCH_ARG(double, weight_decay) = 0.1;
  TORCH_ARG(std::string, root) = "polar_express";  // polar_express | eigh
  TORCH_ARG(int64_t, root_steps) = 10;
  TORCH_ARG(double, damping) = 1e-8;            // eigh: (max(lambda, 0) + damping)^{-1/2}
  TORCH_ARG(std::string, side) = "auto";        // auto | left | right
  TORCH_ARG(double, rms_target) = 0.2;          // 0: no RMS normalisation ("none")
  TORCH_ARG(bool, use_fallback) = false;
  TORCH_ARG(double, fallback_lr) = 1e-2;
  TORCH_ARG(betas_t, fallback_betas) = std::make_tuple(0.9, 0.95);
  TORCH_ARG(double, fallback_eps) = 1e-8;
  TORCH_ARG(double, fallback_weight_decay) = 0.0;
  // bf16/fp16 parameters: state and a master copy of the parameter in float32. The Gram
  // matrix, P and its inverse root are computed in at least float32 either way.
  TORCH_ARG(bool, float32_state) = true;

 public:
};

struct ASGOParamState : public torch::optim::OptimizerCloneableParamState<ASGOParamState>,
                        public StateTensors {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);         // M (matrix) or m (fallback), param shape
  TORCH_ARG(torch::Tensor, preconditioner);  // P, (min(m,n), min(m,n)) with side auto
  TORCH_ARG(std::string, preconditioner_side);  // "left" | "right" once P exists
  TORCH_ARG(torch::Tensor, exp_avg_sq);      // fallback groups: v
  TORCH_ARG(torch::Tensor, master_param);    // float32 copy of a bf16/fp16 parameter

 public:
  void serialize(torch::serialize::OutputArchive& archive) const override;
  void serialize(torch::serialize::InputArchive& archive) override;
  std::vector<torch::Tensor> state_tensors() const override {
    return {exp_avg(), preconditioner(), exp_avg_sq(), master_param()};
  }
};

class ASGO : public torch::optim::Optimizer {
 public:
  ASGO(const NamedParameters& named_params, ASGOOptions defaults = {}, RoutingRule rule = {});
  ASGO(std::vector<torch::optim::OptimizerParamGroup> param_groups, ASGOOptions defaults = {});

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  // Steps at which some matrix's inverse root was non-finite and replaced by I (cumulative;
  // saved with the optimizer state).
  int64_t nan_roots() const { return nan_roots_; }

 private:
  int64_t nan_roots_ = 0;
};

// R ~ P^{-1/2} by the Polar Express iteration of the official ASGO code (spec table).
torch::Tensor inverse_root_polar_express(const torch::Tensor& p, double eps, int64_t steps);
// R = V diag((max(lambda, 0) + damping)^{-1/2}) V^T.
torch::Tensor inverse_root_eigh(const torch::Tensor& p, double damping);

}  // namespace blockopt::optim
