#pragma once
// Exact block norms of an MLP's Hessian without forming it, at sizes where the (P, P) matrix
// cannot exist (the seed paper's theorems: C = 1000 classes, d = 3000, P = 3e6).
#include <blockopt/models/loss.h>
#include <blockopt/models/mlp.h>

#include <torch/torch.h>

#include <vector>

namespace blockopt::hessian {

// The (B, B) matrix of ||H_ij||_F, H the Hessian of the mean loss over (x, y), for the per-row
// partition (make_partition("per_row"): one block per row of each matrix, in parameter order) of a
// bias-free MLP with at most one hidden layer:
//   weights = {W (C, d)}: B = C;  weights = {W_1 (m, d), W_2 (C, m)}: B = m + C.
// x (N, ...) is flattened to (N, d) in the weights' dtype; y (N) holds class indices.
// Every block of H is a sum over samples of scalars times outer products of the samples'
// features, so ||H_ij||_F^2 is a quadratic form a^T (G o G') a in the Gram matrices
// G = X X^T of those features (docs/hessian.md): O(N^2 B^2) time in GEMMs and O(N^2 + N B)
// memory, never O(P^2).
torch::Tensor mlp_block_norms(const std::vector<torch::Tensor>& weights, models::Activation act,
                              const torch::Tensor& x, const torch::Tensor& y, models::Loss loss);

}  // namespace blockopt::hessian
