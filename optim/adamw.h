#pragma once
// AdamW with PyTorch semantics (decoupled weight decay applied first); `adam` is the same
// rule with weight_decay 0.
//   m <- b1 m + (1-b1) g ;  v <- b2 v + (1-b2) g^2
//   W <- W (1 - lr wd) - lr (m / (1-b1^t)) / (sqrt(v) / sqrt(1-b2^t) + eps)
#include <blockopt/optim/common.h>

#include <torch/torch.h>

#include <tuple>
#include <vector>

namespace blockopt::optim {

struct AdamWOptions : public torch::optim::OptimizerCloneableOptions<AdamWOptions> {
  AdamWOptions(double lr = 1e-3);  // NOLINT(google-explicit-constructor): mirrors torch::optim
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
  void serialize(torch::serialize::OutputArchive& archive) const override;
  void serialize(torch::serialize::InputArchive& archive) override;
  void validate(const std::string& optimizer = "AdamW") const;

  using betas_t = std::tuple<double, double>;
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 1e-2;
  // bf16/fp16 parameters: moments and a master copy of the parameter in float32 (false: all
  // state in the parameter dtype).
  TORCH_ARG(bool, float32_state) = true;

 public:
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
