#pragma once
// Quintic Newton-Schulz orthogonalisation (Muon): approximately U V^T for G = U S V^T.
#include <torch/torch.h>

#include <optional>
#include <string>

namespace blockopt::optim {

// G: (rows, cols). Transposes when rows > cols, normalises X = G / (||G||_F + 1e-7)
// (eps_mode "add") or G / max(||G||_F, 1e-7) ("clamp"), then `steps` times
//   A = X X^T ;  X = a X + (b A + c A A) X     with (a, b, c) = (3.4445, -4.7750, 2.0315).
// Computed in `dtype` (default: G's dtype); the result has that dtype.
torch::Tensor newton_schulz(const torch::Tensor& matrix, int64_t steps, const std::string& eps_mode,
                            std::optional<torch::ScalarType> dtype = std::nullopt);

// "" (parameter dtype) or "bfloat16" -> the NS compute dtype; throws for anything else.
std::optional<torch::ScalarType> ns_compute_dtype(const std::string& name);

}  // namespace blockopt::optim
