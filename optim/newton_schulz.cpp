#include <blockopt/optim/newton_schulz.h>

namespace blockopt::optim {

torch::Tensor newton_schulz(const torch::Tensor& matrix, int64_t steps, NsEpsMode eps_mode,
                            std::optional<torch::ScalarType> dtype, NsCoefficients coefficients) {
  TORCH_CHECK(matrix.dim() == 2, "newton_schulz: expected a matrix, got ", matrix.sizes());
  const bool jordan = coefficients == NsCoefficients::jordan;
  const double a = jordan ? 3.4445 : 2.0, b = jordan ? -4.7750 : -1.5, c = jordan ? 2.0315 : 0.5;
  auto x = matrix.to(dtype.value_or(matrix.scalar_type()));
  const bool transposed = x.size(0) > x.size(1);
  if (transposed) x = x.t();
  auto norm = x.norm();
  x = eps_mode == NsEpsMode::clamp ? x / norm.clamp_min(1e-7) : x / (norm + 1e-7);
  x = x.contiguous();
  for (int64_t k = 0; k < steps; ++k) {
    auto gram = x.mm(x.t());                                   // A = X X^T, (r, r)
    auto poly = torch::addmm(gram, gram, gram, b, c);          // b A + c A A
    x = torch::addmm(x, poly, x, a, 1.0);                      // a X + (b A + c A A) X
  }
  return transposed ? x.t() : x;
}

std::optional<torch::ScalarType> ns_compute_dtype(NsDtype dtype) {
  if (dtype == NsDtype::bfloat16) return torch::kBFloat16;
  return std::nullopt;
}

}  // namespace blockopt::optim
