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

// The sums of squared block norms over the row blocks of a last (output) layer W (C, m) alone,
// exactly, from the features h (N, m) that feed it, its logits f = h W^T (N, C) and the
// targets: T = sum_ij ||H_ij||_F^2, D = sum_i ||H_ii||_F^2 of the Hessian of the mean loss
// restricted to W. With d^2 loss / df_n^2 = diag(c_n) - q_n q_n^T and K = (h h^T) o (h h^T):
//   T = sum(K o (C C^T - 2 C (Q o Q)^T + (Q Q^T) o (Q Q^T))),  D = sum(K o (A A^T)), A = C - Q o Q
// (rows n of C, Q: c_n, q_n; T from tr(a_n a_m), a_n = diag(c_n) - q_n q_n^T, K symmetric),
// O(N^2 (m + C)) instead of mlp_block_norms' O(N^2 C^2): the seed paper's ratio of mean squares
// R = (T - D) / ((C - 1) D) for a vocabulary-sized head (an LM's lm_head: its block of H depends
// on the head's input and the softmax alone).
struct RowBlockSums {
  double total = 0.0;     // T
  double diagonal = 0.0;  // D
  int64_t blocks = 0;     // C
  double ratio() const;   // R
};
RowBlockSums last_layer_row_block_sums(const torch::Tensor& features, const torch::Tensor& logits,
                                       const torch::Tensor& targets, models::Loss loss);

}  // namespace blockopt::hessian
