// block_norms: the (B, B) matrix of ||H_ij||_F and the off-diagonal ratios r_ij.
//   matrix_free  exact by Gram contractions (hessian/mlp_block_norms.h): bias-free MLPs with at
//                most one hidden layer, per_row partition; O(N^2 B^2) time, no (P, P) matrix;
//   full         exact from the full H up to full_limit parameters, Hutchinson estimates above;
//   auto         matrix_free where it applies and costs less than the full H (N B^2 < P^2, from
//                N^2 B^2 against N P^2 multiply-adds) or the full H would exceed full_limit;
//                else full.
#include <blockopt/experiments/detail/probe.h>

namespace blockopt::experiments::detail {

namespace {

bool matrix_free_is_cheaper(const ProbeContext& probe) {
  const auto n = static_cast<double>(probe.target.all_x.size(0));
  const auto b = static_cast<double>(probe.partition.size());
  const auto p = static_cast<double>(probe.parameter_count);
  return probe.parameter_count > probe.spec.full_limit || n * b * b < p * p;
}

}  // namespace

void run_block_norms(ProbeContext& probe) {
  const auto& method = probe.spec.method;
  const bool matrix_free =
      method == "matrix_free" ||
      (method == "auto" && probe.matrix_free_unavailable().empty() && matrix_free_is_cheaper(probe));
  if (matrix_free) {
    probe.block_outputs(probe.matrix_free_block_norms());
  } else if (probe.parameter_count <= probe.spec.full_limit) {
    probe.block_outputs(hessian::block_norms(probe.full_hessian(), probe.partition));
  } else {
    probe.estimated_block_norms();
  }
}

}  // namespace blockopt::experiments::detail
