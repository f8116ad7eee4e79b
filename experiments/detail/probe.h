#pragma once
// What a probe type sees (ProbeContext) and the table of probe types (probes/registry.cpp).
// A probe type is one function, experiments/probes/<type>.cpp, that computes from the
// context's Hessian operator and writes through the context's outputs; the callback
// (probes.cpp) builds the context, runs the function and writes the record.
#include <blockopt/experiments/probes.h>
#include <blockopt/hessian/mlp_hessian.h>
#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/partition.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

namespace blockopt::experiments::detail {

// What one probe differentiates: the parameters (copies in the probe's dtype for MLPs, so the
// model itself is never touched), the loss on the evaluation set, and whether the MLP closed
// form applies. In a data-parallel job each rank takes its rows of the evaluation set, its
// loss is weighted by their share of it, and the Hessian's values are summed over the ranks.
struct ProbeTarget {
  std::vector<torch::Tensor> params;
  std::vector<hessian::ParamInfo> infos;
  hessian::LossClosure loss;
  bool closed_form = false;  // an MLP: mlp_hessian_closed_form
  bool bias = false;
  models::Activation activation = models::Activation::ReLU;
  torch::Tensor x, y;  // this rank's rows of the evaluation set
  torch::Tensor all_x, all_y;  // the whole evaluation set, for what is no sum over its rows
  models::Model* model = nullptr;  // the trained model itself (output_ratio reads its head)
  double share = 1.0;   // their fraction of the evaluation set
  hessian::SumOverRanks sum_over_ranks;  // empty: one process
  models::Loss loss_kind = models::Loss::CrossEntropy;
  torch::TensorOptions options;
};
ProbeTarget make_probe_target(Trainer& trainer, const ProbeSpec& spec);

// The rows (int64 indices) of a (rows, width) tensor that starts at `begin` in the flattened
// `gradient` whose gradient is non-zero: the rows the evaluation data reach (an unused token's
// embedding row has zero Hessian blocks).
torch::Tensor rows_reached(const torch::Tensor& gradient, int64_t begin, int64_t rows, int64_t width);

// A tensor as nested JSON arrays of numbers.
nlohmann::json to_json(const torch::Tensor& t);

// One probe at one step: the Hessian operator of its target, the partition, a generator of its
// own, and the record (one line of probes.jsonl) and files it writes. Files are named
// <type>_<step>_<index><suffix> under the probe directory and listed in `files`.
class ProbeContext {
 public:
  ProbeContext(const ProbeSpec& spec, ProbeTarget target, at::Generator generator,
               const std::filesystem::path& dir, int64_t step, size_t index);

  const ProbeSpec& spec;
  ProbeTarget target;
  hessian::HessianOperator op;
  at::Generator generator;
  hessian::Partition partition;
  int64_t parameter_count;  // P
  nlohmann::json record;
  nlohmann::json files = nlohmann::json::array();

  // The full (P, P) H, closed form when the target has one, else by autograd; sets "method".
  torch::Tensor full_hessian();
  // Hutchinson estimates of the block norms ||H_ij||_F with their standard errors, written as
  // block_outputs; sets "method".
  void estimated_block_norms();
  // Why hessian::mlp_block_norms cannot give this probe's block norms, or "" when it can (a
  // bias-free MLP with at most one hidden layer, the per_row partition).
  std::string matrix_free_unavailable() const;
  // The exact (B, B) block norms by hessian::mlp_block_norms, on the whole evaluation set on
  // every rank (its Gram contractions are no sum over rows); sets "method".
  torch::Tensor matrix_free_block_norms();

  // Outputs, each listed in `files`; nothing is written when the probe directory is empty (the
  // ranks other than 0 of a job compute, rank 0 writes):
  // <suffix>.npy of `t`.
  void save(const std::string& suffix, const torch::Tensor& t);
  // Log-scale heatmap of a square `t` indexed by parameters or by blocks: <suffix>.png, and
  // <suffix without .png>.heatmap.json for the report (detail/heatmap.h) with the tensors'
  // ranges along its axes and `label` naming an entry. Its colour range goes to record[key].
  enum class Index { Parameters, Blocks };
  void heatmap(const std::string& suffix, const torch::Tensor& t, const std::string& key,
               Index index, const std::string& label);
  // (B, B) block norms: _blocks.npy, _blocks.png and the off-diagonal ratios in the record.
  void block_outputs(const torch::Tensor& norms);
  // Marchenko-Pastur fit of `eigenvalues` with its histogram <suffix>_hist.png; returns the
  // fit and histogram as JSON.
  nlohmann::json spectrum_fit(const std::string& suffix, const torch::Tensor& eigenvalues);

 private:
  std::filesystem::path dir_;
  std::string prefix_;  // <type>_<step>_<index>
};

// A probe type: its name in configs (`type:`) and what it computes.
struct ProbeType {
  std::string name;
  void (*run)(ProbeContext& probe);
};

// Every probe type, in the order config errors list them.
const std::vector<ProbeType>& probe_types();
// The type named `name`, or nullptr.
const ProbeType* find_probe_type(const std::string& name);

}  // namespace blockopt::experiments::detail
