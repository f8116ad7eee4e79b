#pragma once
// ASGO: one-sided full-matrix preconditioner on G (m, n); side left if m < n else right.
//   M <- b1 M + (1-b1) G ;  P <- b2 P + (1-b2) S,  S = G G^T (m, m) or G^T G (n, n)
//   R ~ P^{-1/2} ;  U = R M (left) or M R (right)
//   U <- U rms_target sqrt(m n) / ||U||_F ;  W <- W (1 - lr wd) - lr U
// A non-finite R is replaced by I for that step, and the step is counted (nan_roots()).
#include <blockopt/optim/options.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::optim {

// R ~ P^{-1/2}: Polar Express iteration (official code) or eigh (exact).
enum class ASGORoot { polar_express, eigh };
template <>
struct EnumNames<ASGORoot> {
  static constexpr std::array<std::pair<ASGORoot, const char*>, 2> values{
      {{ASGORoot::polar_express, "polar_express"}, {ASGORoot::eigh, "eigh"}}};
};

// The side of P: automatic (left if m < n, else right), left, right.
enum class ASGOSide { automatic, left, right };
template <>
struct EnumNames<ASGOSide> {
  static constexpr std::array<std::pair<ASGOSide, const char*>, 3> values{
      {{ASGOSide::automatic, "auto"}, {ASGOSide::left, "left"}, {ASGOSide::right, "right"}}};
};

#define BLOCKOPT_ASGO_FIELDS(X)                                                            \
  X(double, lr, 1e-2, Rule::lr(),                                                          \
    "learning rate (also the fallback's unless `fallback.lr` is set)")                     \
  X(double, momentum, 0.9, Rule::unit_interval(), "b1 for M")                              \
  X(double, beta2, 0.8, Rule::unit_interval(), "b2 for P")                                 \
  X(double, eps, 1e-10, Rule::non_negative(), "Polar Express: s = 1.01 ‖P + eps I‖_F")     \
  X(double, weight_decay, 0.1, Rule::non_negative(), "decoupled decay")                    \
  X(ASGORoot, root, ASGORoot::polar_express, Rule::any(),                                  \
    "`polar_express` (official) or `eigh` (exact)")                                        \
  X(int64_t, root_steps, 10, Rule::at_least(1), "Polar Express iterations")                \
  X(double, damping, 1e-8, Rule::non_negative(), "eigh: (max(lambda,0) + damping)^(-1/2)") \
  X(ASGOSide, side, ASGOSide::automatic, Rule::any(),                                      \
    "`auto` (left if rows < cols, else right), `left`, `right`")                           \
  BLOCKOPT_FLOAT32_STATE_FIELD(X)                                                          \
  X(double, rms_target, 0.2, Rule::non_negative().none_means_zero(),                       \
    "U scaled to this RMS; `none` (stored as 0) skips")                                    \
  BLOCKOPT_FALLBACK_FIELDS(X, 1e-2, 1e-8)

// One Options type for matrix and fallback groups; see MuonOptions. The constructor sets
// fallback_lr = lr (spec: the fallback uses ASGO's lr unless told otherwise). The Gram
// matrix, P and its inverse root are computed in at least float32 (float32_state or not).
struct ASGOOptions : public FieldOptions<ASGOOptions> {
  static constexpr const char* kName = "ASGO";
  ASGOOptions(double lr = 1e-2);  // NOLINT(google-explicit-constructor): mirrors torch::optim
  using betas_t = optim::betas_t;
  BLOCKOPT_OPTION_FIELDS(BLOCKOPT_ASGO_FIELDS)
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
