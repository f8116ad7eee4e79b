#pragma once
// The pieces of an MLP's Hessian that the closed form (mlp_hessian.cpp) and the matrix-free
// block norms (mlp_block_norms.cpp) share: the activation with its derivatives, and the loss's
// gradient and curvature with respect to the logits.
#include <blockopt/models/loss.h>
#include <blockopt/models/mlp.h>

#include <torch/torch.h>

#include <utility>

namespace blockopt::hessian::detail {

// sigma(z), as models::MLP applies it.
torch::Tensor activation(const torch::Tensor& z, models::Activation act);

// sigma'(z) and sigma''(z) by autograd, so every activation models::MLP has is covered.
std::pair<torch::Tensor, torch::Tensor> activation_derivatives(const torch::Tensor& z,
                                                              models::Activation act);

// The mean loss over N samples against the logits f (N, C), per sample n:
//   d loss / df_n = r_n, d^2 loss / df_n^2 = diag(curv_n) - q_n q_n^T (q only for CE).
// CE: curv = p / N, q = p / sqrt(N), r = (p - onehot) / N;
// MSE (mean over N C entries): curv = 2 / (N C), no q, r = 2 (f - onehot) / (N C).
struct LogitCurvature {
  torch::Tensor curv, q, r;  // (N, C) each; q undefined for MSE
};
LogitCurvature logit_curvature(const torch::Tensor& logits, const torch::Tensor& targets,
                               models::Loss loss);

}  // namespace blockopt::hessian::detail
