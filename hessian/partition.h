#pragma once
// Block norms of H over a partition of the parameter vector (optim/partition.h).
#include <blockopt/optim/partition.h>

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace blockopt::hessian {

// The probe's blocks are Adam-mini's (optim/partition.h): one vocabulary for both.
using optim::Block;
using optim::make_partition;
using optim::ParamInfo;
using optim::param_infos;
using optim::Partition;

// (B, B) matrix of ||H_ij||_F from a full (P, P) H.
torch::Tensor block_norms(const torch::Tensor& hessian, const Partition& partition);

// H_bb, the Hessian restricted to block b.
torch::Tensor principal_block(const torch::Tensor& hessian, const Block& block);

// r_ij = ||H_ij||_F / ||H_ii||_F over i != j.
struct RatioSummary {
  torch::Tensor ratio;         // (B, B), diagonal 0; rows with ||H_ii|| = 0 are 0 and left out
  int64_t rows_without_ratio = 0;  // blocks with ||H_ii|| = 0 (e.g. dead ReLU units)
  double mean = 0.0;           // over i != j
  double max = 0.0;
  torch::Tensor by_tensor_pair;  // (T, T) mean r_ij over i in tensor s, j in tensor t, i != j
  // The seed paper's quantity: r_ij^2 = ||H_ij||_F^2 / ||H_ii||_F^2, averaged the same ways.
  double squared_mean = 0.0;
  torch::Tensor squared_by_tensor_pair;  // (T, T)
  // The theorems' quantity (seed paper, eq. 20), a ratio of means, not a mean of ratios:
  // mean over i != j of ||H_ij||_F^2 / mean over i of ||H_ii||_F^2, over every block (rows with
  // ||H_ii|| = 0 included), and by tensor pair (i in tensor s, j in tensor t, divided by the
  // mean ||H_ii||^2 of tensor s; 0 where tensor s has only zero diagonal blocks).
  double squared_norm_ratio = 0.0;
  torch::Tensor squared_norm_ratio_by_tensor_pair;  // (T, T)
};
RatioSummary off_diagonal_ratios(const torch::Tensor& norms, const Partition& partition);

}  // namespace blockopt::hessian
