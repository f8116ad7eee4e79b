#pragma once
// NorMuon: Muon's orthogonalised update O with a per-neuron (row) second moment.
//   r_i = mean_j O_ij^2 ;  v <- b2 v + (1-b2) r  (rows, 1), no bias correction
//   (reduce: shorter_axis on a wide matrix: r_j = mean_i O_ij^2, v (1, cols))
//   O' = O / (sqrt(v) + 1e-10)
//   preserve_norm: U = O' ||O||_F / (||O'||_F + 1e-10) sqrt(max(1, rows/cols))
//   rms:           U = O' 0.2 sqrt(rows cols) / (||O'||_F + 1e-10)
//   W <- W (1 - lr wd) - lr U   (matrix_step, muon.h: update_floor, hyperball)
#include <blockopt/optim/muon.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::optim {

// U from O' (header): preserve_norm (official code) or rms (paper).
enum class NorMuonFinalScale { preserve_norm, rms };
template <>
struct EnumNames<NorMuonFinalScale> {
  static constexpr std::array<std::pair<NorMuonFinalScale, const char*>, 2> values{
      {{NorMuonFinalScale::preserve_norm, "preserve_norm"}, {NorMuonFinalScale::rms, "rms"}}};
};

// The axis the second moment averages over: always the columns (one v per row, the official
// code), or the shorter axis (one v per row of a tall or square matrix, per column of a wide
// one; modded-nanogpt's NorMuon).
enum class NorMuonReduce { rows, shorter_axis };
template <>
struct EnumNames<NorMuonReduce> {
  static constexpr std::array<std::pair<NorMuonReduce, const char*>, 2> values{
      {{NorMuonReduce::rows, "rows"}, {NorMuonReduce::shorter_axis, "shorter_axis"}}};
};

#define BLOCKOPT_NORMUON_FIELDS(X)                                                         \
  BLOCKOPT_MUON_COMMON_FIELDS(X)                                                           \
  BLOCKOPT_FALLBACK_FIELDS(X, 3e-4, 1e-10)                                                 \
  X(double, beta2, 0.95, Rule::unit_interval(), "decay of the second moment v of O")       \
  X(NorMuonFinalScale, final_scale, NorMuonFinalScale::preserve_norm, Rule::any(),         \
    "`preserve_norm` (official code) or `rms` (paper: 0.2 sqrt(rows cols)/‖O'‖)")          \
  X(NorMuonReduce, reduce, NorMuonReduce::rows, Rule::any().added_later(),                 \
    "`rows`: v per row; `shorter_axis`: mean over the shorter axis, v per column if wide") \
  BLOCKOPT_MATRIX_STEP_FIELDS(X)

// One Options type for matrix and fallback groups; see MuonOptions.
struct NorMuonOptions : public FieldOptions<NorMuonOptions> {
  static constexpr const char* kName = "NorMuon";
  NorMuonOptions(double lr = 0.02);  // NOLINT(google-explicit-constructor): mirrors torch::optim
  using betas_t = optim::betas_t;
  BLOCKOPT_OPTION_FIELDS(BLOCKOPT_NORMUON_FIELDS)
};

struct NorMuonParamState : public torch::optim::OptimizerCloneableParamState<NorMuonParamState>,
                           public StateTensors {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, momentum_buffer);  // matrix groups: B
  TORCH_ARG(torch::Tensor, second_moment);    // matrix groups: v, (rows, 1) or (1, cols)
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
