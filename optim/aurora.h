#pragma once
// Aurora (Tilde Research, 2026): Muon's momentum, then a polar factor whose rows all carry the
// same leverage, so that no neuron keeps getting tiny updates.
//   B <- mu B + (1-mu) G ;  D = (1-mu) G + mu B (nesterov) or B
//   square D: O = polar(D). Otherwise, on the tall orientation T (m, n), m > n (a wide D is
//   transposed, and O back):
//     s_i = 1 / max(||row_i(T)||, eps)
//     pp_iterations times: O = polar(diag(s) T); unless last,
//                          s_i <- s_i ((n/m) / max(||row_i(O)||^2, eps^2))^pp_beta
//   W <- W (1 - lr wd) - lr sqrt(max(1, rows/cols)) O
// polar: the simple quintic X <- 2X - 1.5 (X X^T) X + 0.5 (X X^T)^2 X, polar_steps times, on
// X / (||X||_F + 1e-7) in the wide orientation (newton_schulz, NsCoefficients::simple).
// Non-matrix tensors (by name, routing.h) run the AdamW fallback, as in Muon.
#include <blockopt/optim/newton_schulz.h>
#include <blockopt/optim/options.h>
#include <blockopt/optim/routing.h>
#include <blockopt/optim/state.h>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::optim {

#define BLOCKOPT_AURORA_FIELDS(X)                                                               \
  X(double, lr, 0.05, Rule::lr(), "learning rate")                                              \
  X(double, momentum, 0.95, Rule::unit_interval(), "EMA momentum mu")                           \
  X(bool, nesterov, true, Rule::any(), "D = (1-mu) G + mu B instead of B")                      \
  X(double, weight_decay, 0.025, Rule::non_negative(), "decoupled decay")                       \
  X(int64_t, pp_iterations, 2, Rule::at_least(1), "row-scaling rounds, one polar factor each") \
  X(double, pp_beta, 0.5, Rule::non_negative(), "exponent of the row-scale correction")         \
  X(double, eps, 1e-7, Rule::positive(), "floor of the row norms (eps^2 of their squares)")     \
  X(int64_t, polar_steps, 12, Rule::at_least(0), "simple-quintic iterations per polar factor")  \
  X(NsDtype, ns_dtype, NsDtype::parameter, Rule::any(),                                         \
    "polar factor in \"\" (parameter dtype) or `bfloat16` (the official code)")                 \
  BLOCKOPT_FLOAT32_STATE_FIELD(X)                                                               \
  BLOCKOPT_FALLBACK_FIELDS(X, 3e-4, 1e-10)

// One Options type for matrix and fallback groups; see MuonOptions.
struct AuroraOptions : public FieldOptions<AuroraOptions> {
  static constexpr const char* kName = "Aurora";
  AuroraOptions(double lr = 0.05);  // NOLINT(google-explicit-constructor): mirrors torch::optim
  using betas_t = optim::betas_t;
  BLOCKOPT_OPTION_FIELDS(BLOCKOPT_AURORA_FIELDS)
};

struct AuroraParamState : public torch::optim::OptimizerCloneableParamState<AuroraParamState>,
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

class Aurora : public torch::optim::Optimizer {
 public:
  // Routes by name: matrix group + AdamW fallback group.
  Aurora(const NamedParameters& named_params, AuroraOptions defaults = {}, RoutingRule rule = {});
  // Explicit groups; each group's options say whether it is a fallback group.
  Aurora(std::vector<torch::optim::OptimizerParamGroup> param_groups, AuroraOptions defaults = {});

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

// The leverage-uniform polar factor of a direction D (rows, cols), in D's dtype (the polar
// factors in `dtype` when given), before the shape factor and lr: the rule above.
torch::Tensor aurora_polar(const torch::Tensor& direction, const AuroraOptions& options);

}  // namespace blockopt::optim
