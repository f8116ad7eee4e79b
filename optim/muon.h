#pragma once
// Muon: momentum, then Newton-Schulz orthogonalisation of the (rows, cols) update.
//   B <- mu B + (1-mu) G ;  D = (1-mu) G + mu B (nesterov) or B
//   W <- W (1 - lr wd) - lr s(rows, cols) NS(D)
// The last line is matrix_step (below), whose update_floor and hyperball options Muon and
// NorMuon share. Non-matrix tensors (by name, routing.h) run the AdamW fallback.
#include <blockopt/optim/options.h>
#include <blockopt/optim/newton_schulz.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::optim {

// Shape factor s(rows, cols) of the update (muon_scale).
enum class MuonScale { original, match_rms_adamw, none };
template <>
struct EnumNames<MuonScale> {
  static constexpr std::array<std::pair<MuonScale, const char*>, 3> values{
      {{MuonScale::original, "original"},
       {MuonScale::match_rms_adamw, "match_rms_adamw"},
       {MuonScale::none, "none"}}};
};

// update_floor_mode: what ||U|| / ||W|| is measured on, the whole matrix or each row.
enum class UpdateFloorMode { tensor, row };
template <>
struct EnumNames<UpdateFloorMode> {
  static constexpr std::array<std::pair<UpdateFloorMode, const char*>, 2> values{
      {{UpdateFloorMode::tensor, "tensor"}, {UpdateFloorMode::row, "row"}}};
};

// The momentum and Newton-Schulz fields of Muon and NorMuon (orthogonalised_momentum), and
// their float32_state, in config order.
#define BLOCKOPT_MUON_COMMON_FIELDS(X)                                           \
  X(double, lr, 0.02, Rule::lr(), "learning rate")                               \
  X(double, momentum, 0.95, Rule::unit_interval(), "EMA momentum mu")            \
  X(bool, nesterov, true, Rule::any(), "D = (1-mu) G + mu B instead of B")       \
  X(double, weight_decay, 0.0, Rule::non_negative(), "decoupled decay")          \
  X(int64_t, ns_steps, 5, Rule::at_least(0), "quintic Newton-Schulz iterations") \
  X(NsEpsMode, ns_eps_mode, NsEpsMode::add, Rule::any(),                         \
    "`add`: X/(‖X‖+1e-7); `clamp`: X/max(‖X‖,1e-7)")                             \
  X(NsDtype, ns_dtype, NsDtype::parameter, Rule::any(),                          \
    "\"\" (parameter dtype) or `bfloat16` (imitates the official kernels)")      \
  BLOCKOPT_FLOAT32_STATE_FIELD(X)                                                \
  X(NsCoefficients, ns_coefficients, NsCoefficients::jordan,                     \
    Rule::any().added_later(), "`jordan` (3.4445, -4.775, 2.0315) or `simple` (2, -1.5, 0.5)")

// How a matrix takes its step U (matrix_step), Muon and NorMuon; after their own fields.
#define BLOCKOPT_MATRIX_STEP_FIELDS(X)                                                      \
  X(double, update_floor, 0.0, Rule::non_negative().added_later(),                          \
    "u/w floor f: U scaled up to ‖U‖ = f ‖W‖ where ‖U‖/‖W‖ < f (0: off)")                   \
  X(UpdateFloorMode, update_floor_mode, UpdateFloorMode::tensor, Rule::any().added_later(), \
    "`tensor`: Frobenius norms of U and W; `row`: each row of U against the same row of W") \
  X(bool, hyperball, false, Rule::any().added_later(),                                      \
    "W <- W - lr ‖W‖ U/‖U‖, then rescaled to its norm before the step; no weight decay")

#define BLOCKOPT_MUON_FIELDS(X)                                                                \
  BLOCKOPT_MUON_COMMON_FIELDS(X)                                                               \
  BLOCKOPT_FALLBACK_FIELDS(X, 3e-4, 1e-10)                                                     \
  X(MuonScale, scale, MuonScale::original, Rule::any(),                                        \
    "`original` sqrt(max(1,rows/cols)); `match_rms_adamw` 0.2 sqrt(max(rows,cols)); `none` 1") \
  BLOCKOPT_MATRIX_STEP_FIELDS(X)

// One Options type for matrix and fallback groups (torch::optim::serialize needs one type):
// in a fallback group (use_fallback) lr/weight_decay are the AdamW ones, copied from
// fallback_lr/fallback_weight_decay by the named-parameter constructor.
struct MuonOptions : public FieldOptions<MuonOptions> {
  static constexpr const char* kName = "Muon";
  MuonOptions(double lr = 0.02);  // NOLINT(google-explicit-constructor): mirrors torch::optim
  using betas_t = optim::betas_t;
  BLOCKOPT_OPTION_FIELDS(BLOCKOPT_MUON_FIELDS)

  // PyTorch >= 2.9 torch.optim.Muon with its defaults (lr 1e-3, weight_decay 0.1, momentum
  // 0.95, nesterov, Newton-Schulz in bfloat16 on X / max(||X||, 1e-7), 5 steps, adjust_lr_fn
  // "original" = scale original; set scale(MuonScale::match_rms_adamw) for "match_rms_adamw"),
  // state in the parameter dtype as torch keeps it, and the fallback set to torch.optim.AdamW's
  // defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01). Config: `preset: torch`.
  static MuonOptions torch_compat();
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
                       ns_compute_dtype(options.ns_dtype()), options.ns_coefficients())
      .to(param.scalar_type());
}

// max(1, f ||W_i|| / ||U_i||) for W, U (rows, cols): (rows, 1) per row, 0-d per tensor.
torch::Tensor update_floor_factor(const torch::Tensor& weight, const torch::Tensor& update,
                                  double floor, UpdateFloorMode mode);

// The hyperball step of matrix_step: W' = W - lr ||W|| U/||U||, rescaled to ||W||.
void hyperball_step(torch::Tensor& param, const torch::Tensor& update, double lr);

// The step of a matrix parameter `param` (Muon, NorMuon; any shape, viewed as (rows, cols))
// along `direction` (rows, cols) with the update U = scale * direction:
//   update_floor f > 0: U_i <- U_i max(1, f ||W_i|| / ||U_i||), i the whole matrix (tensor) or
//     each row (row); norms clamped to >= 1e-8. A row or matrix already at or above f is
//     multiplied by exactly 1.
//   hyperball: W' = W - lr ||W||_F U / max(||U||_F, 1e-10);  W <- W' ||W||_F / max(||W'||_F, 1e-10)
//   otherwise: W <- W (1 - lr wd) - lr U.
// NOTE: the hyperball keeps the norm W has before each step, which is its initial norm as
// long as every step is a hyperball step (the record's code does the same; no state).
template <typename Options>
void matrix_step(torch::Tensor& param, const torch::Tensor& direction, double scale,
                 const Options& options) {
  auto update = direction;  // (rows, cols); U = scale * update
  if (options.update_floor() > 0.0) {
    update = update * update_floor_factor(as_matrix(param), scale * update, options.update_floor(),
                                          options.update_floor_mode());
  }
  if (options.hyperball()) {
    hyperball_step(param, update.reshape(param.sizes()), options.lr());
    return;
  }
  param.mul_(1.0 - options.lr() * options.weight_decay());
  param.add_(update.reshape(param.sizes()), -options.lr() * scale);
}

// Shape factor s(rows, cols): original sqrt(max(1, rows/cols)), match_rms_adamw
// 0.2 sqrt(max(rows, cols)), none 1.
double muon_scale(MuonScale scale, int64_t rows, int64_t cols);

}  // namespace blockopt::optim
