#pragma once
// A functional MLP and its exact Hessian in closed form, for any depth.
#include <blockopt/models/loss.h>
#include <blockopt/models/mlp.h>

#include <torch/torch.h>

#include <vector>

namespace blockopt::hessian {

// The parameters of models::MLP in its order: W_1 (m_1, d), [b_1 (m_1)], ..., W_L (C, m_{L-1}),
// [b_L (C)], the biases present when `bias`.

// Forward pass (N, d) -> (N, C), as models::MLP: activation after every layer but the last.
torch::Tensor mlp_forward(const std::vector<torch::Tensor>& params, models::Activation act,
                          const torch::Tensor& x, bool bias = false);

// The exact Hessian of the mean loss over (x, y) with respect to `params` (P, P), row and
// column order as full_hessian. Per layer pair l <= l' (each pair once, mirrored):
//   H_{W_l, W_l'} = sum_n u_l u_l'^T-shaped contractions of
//     Gauss-Newton and pre-activation curvature: (K_{l'l}^T Hz_{l'})_n (x) h_{l-1} h_{l'-1}^T
//     residual through h_{l'-1}:               delta_{l'} (x) h_{l-1} (dh_{l'-1}/dz_l)
// where Hz_l = d^2 loss / dz_l^2 is backpropagated as
//   Hz_L = loss curvature, Hz_l = S_l W_{l+1}^T Hz_{l+1} W_{l+1} S_l + diag(sigma''(z_l) delta_l~),
// K_{l'l} = dz_{l'}/dz_l, delta_l = dloss/dz_l, S_l = diag(sigma'(z_l)). The cross-entropy
// curvature diag(p) - p p^T is never formed: its rank-one part is one GEMM on the last layer.
// Biases are layers whose input is 1. All contractions are batched GEMMs over samples.
torch::Tensor mlp_hessian_closed_form(const std::vector<torch::Tensor>& params,
                                      models::Activation act, const torch::Tensor& x,
                                      const torch::Tensor& y, models::Loss loss,
                                      bool bias = false);

}  // namespace blockopt::hessian
