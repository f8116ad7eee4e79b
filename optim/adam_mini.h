#pragma once
// Adam-mini: AdamW with one second-moment scalar per block of a partition (partition.h).
//   m   <- b1 m + (1-b1) g                         (full size)
//   v_B <- b2 v_B + (1-b2) mean_{i in B} g_i^2     (one scalar per block B)
//   W   <- W (1 - lr wd) - lr (m / (1-b1^t)) / (sqrt(v_B) / sqrt(1-b2^t) + eps)
#include <blockopt/optim/options.h>
#include <blockopt/optim/partition.h>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::optim {

// The built-in partition rules (partition_rule); custom: a PartitionRule was passed.
enum class AdamMiniPartition { gpt, v111, elementwise, custom };
template <>
struct EnumNames<AdamMiniPartition> {
  static constexpr std::array<std::pair<AdamMiniPartition, const char*>, 4> values{
      {{AdamMiniPartition::gpt, "gpt"},
       {AdamMiniPartition::v111, "v111"},
       {AdamMiniPartition::elementwise, "elementwise"},
       {AdamMiniPartition::custom, "custom"}}};
};

#define BLOCKOPT_ADAM_MINI_FIELDS(X)                                                  \
  X(double, lr, 1e-3, Rule::lr(), "learning rate")                                    \
  X(betas_t, betas, (std::make_tuple(0.9, 0.999)), Rule::unit_interval(), "(b1, b2)") \
  X(double, eps, 1e-8, Rule::non_negative(), "added to sqrt(v_B)/sqrt(1-b2^t)")       \
  X(double, weight_decay, 0.0, Rule::non_negative(),                                  \
    "decoupled decay (not on tensors excluded by the partition)")                     \
  X(int64_t, head_dim, 64, Rule::at_least(1),                                         \
    "rows per attention head (Q/K blocks); must divide their rows")                   \
  X(AdamMiniPartition, partition, AdamMiniPartition::gpt, Rule::any(),                \
    "`gpt`, `v111`, `elementwise` (`custom` when a function is passed)")              \
  BLOCKOPT_FLOAT32_STATE_FIELD(X)

struct AdamMiniOptions : public FieldOptions<AdamMiniOptions> {
  static constexpr const char* kName = "Adam-mini";
  AdamMiniOptions(double lr = 1e-3);  // NOLINT(google-explicit-constructor): mirrors torch::optim
  using betas_t = optim::betas_t;
  BLOCKOPT_OPTION_FIELDS(BLOCKOPT_ADAM_MINI_FIELDS)
};

struct AdamMiniParamState : public torch::optim::OptimizerCloneableParamState<AdamMiniParamState>,
                            public StateTensors {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);     // param shape
  TORCH_ARG(torch::Tensor, exp_avg_sq);    // (blocks,)
  TORCH_ARG(torch::Tensor, master_param);  // float32 copy of a bf16/fp16 parameter

 public:
  void serialize(torch::serialize::OutputArchive& archive) const override;
  void serialize(torch::serialize::InputArchive& archive) override;
  std::vector<torch::Tensor> state_tensors() const override {
    return {exp_avg(), exp_avg_sq(), master_param()};
  }
};

class AdamMini : public torch::optim::Optimizer {
 public:
  // Partition from options.partition() (or `custom_rule` when given; partition() then
  // reads "custom"). One param group. load() rebuilds the partition from the loaded options.
  AdamMini(const NamedParameters& named_params, AdamMiniOptions defaults = {},
           PartitionRule custom_rule = nullptr);

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  const Partition& partition() const { return partition_; }
  std::string partition_summary() const;
  std::vector<std::string> partition_warnings() const;
  // true: fused single-pass loop (default); false: reference tensor ops.
  void set_fused(bool fused) { fused_ = fused; }

 private:
  // Throws unless `state` matches `param` and its block layout in `partition`.
  void check_state(const AdamMiniParamState& state, const torch::Tensor& param,
                   const AdamMiniOptions& options, const detail::ParamSlot& slot,
                   const Partition& partition) const;

  NamedParameters named_params_;
  PartitionRule custom_rule_;  // null unless constructed with one
  Partition partition_;        // parallel to param_groups_[0].params()
  bool fused_ = true;
};

// One Adam-mini update of a single parameter with plain tensor ops (the reference).
// Creates the state on first use; `layout` gives the block size and decay flag.
void adam_mini_update_reference(torch::Tensor& param, const torch::Tensor& grad,
                                AdamMiniParamState& state, const AdamMiniOptions& options,
                                const BlockLayout& layout);

}  // namespace blockopt::optim
