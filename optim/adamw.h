#pragma once
// AdamW with PyTorch semantics (decoupled weight decay applied first); `adam` is the same
// rule with weight_decay 0.
//   m <- b1 m + (1-b1) g ;  v <- b2 v + (1-b2) g^2
//   W <- W (1 - lr wd) - lr (m / (1-b1^t)) / (sqrt(v) / sqrt(1-b2^t) + eps)
#include <blockopt/optim/options.h>

#include <torch/torch.h>

#include <vector>

namespace blockopt::optim {

#define BLOCKOPT_ADAMW_FIELDS(X)                                                        \
  X(double, lr, 1e-3, Rule::lr(), "learning rate")                                      \
  X(betas_t, betas, (std::make_tuple(0.9, 0.999)), Rule::unit_interval(),               \
    "(b1, b2) moment decays")                                                           \
  X(double, eps, 1e-8, Rule::non_negative(), "added to sqrt(v)/sqrt(1-b2^t)")           \
  X(double, weight_decay, 1e-2, Rule::non_negative(), "decoupled decay (`adamw` only)") \
  BLOCKOPT_FLOAT32_STATE_FIELD(X)

struct AdamWOptions : public FieldOptions<AdamWOptions> {
  static constexpr const char* kName = "AdamW";
  AdamWOptions(double lr = 1e-3);  // NOLINT(google-explicit-constructor): mirrors torch::optim
  using betas_t = optim::betas_t;
  BLOCKOPT_OPTION_FIELDS(BLOCKOPT_ADAMW_FIELDS)
};

struct AdamWParamState : public torch::optim::OptimizerCloneableParamState<AdamWParamState>,
                         public StateTensors {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);
  TORCH_ARG(torch::Tensor, exp_avg_sq);
  TORCH_ARG(torch::Tensor, master_param);  // float32 copy of a bf16/fp16 parameter

 public:
  void serialize(torch::serialize::OutputArchive& archive) const override;
  void serialize(torch::serialize::InputArchive& archive) override;
  std::vector<torch::Tensor> state_tensors() const override {
    return {exp_avg(), exp_avg_sq(), master_param()};
  }
};

class AdamW : public torch::optim::Optimizer {
 public:
  explicit AdamW(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                 AdamWOptions defaults = {});
  explicit AdamW(std::vector<torch::Tensor> params, AdamWOptions defaults = {});

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  // true: fused single-pass loop where supported (default); false: reference tensor ops.
  void set_fused(bool fused) { fused_ = fused; }

 private:
  bool fused_ = true;
};

// One Adam(W) update of `param` from its moments (same shape as param, already allocated);
// `step` is the count including this update. Shared by AdamW and every AdamW fallback.
void adam_update(torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg,
                 torch::Tensor& exp_avg_sq, int64_t step, double lr, double beta1, double beta2,
                 double eps, double weight_decay);

// One AdamW update of a single parameter with the straightforward tensor ops of PyTorch's
// single-tensor Adam; the reference every faster path is tested against. Creates the state
// on first use.
void adamw_update_reference(torch::Tensor& param, const torch::Tensor& grad,
                            AdamWParamState& state, const AdamWOptions& options);

}  // namespace blockopt::optim
