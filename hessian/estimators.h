#pragma once
// Matrix-free estimators on a symmetric operator v -> H v: Hutchinson block norms, Lanczos
// (full reorthogonalisation), top eigenvalues, trace (Hutchinson, Hutch++), stochastic
// Lanczos quadrature densities, and the Jensen-Shannon distance between spectra.
#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/partition.h>

#include <torch/torch.h>

#include <functional>

namespace blockopt::hessian {

using MatVec = std::function<torch::Tensor(const torch::Tensor&)>;  // (P) -> (P)

MatVec as_matvec(HessianOperator& op);
MatVec as_matvec(const torch::Tensor& matrix);
// v_b -> (H v)_b for v supported on `block`: the principal block H_bb as an operator.
MatVec restrict_to(const MatVec& op, const Block& block, int64_t total, torch::TensorOptions options);

// Rademacher +-1 entries, drawn from `generator` only (never the global stream). NOTE: drawn
// on the generator's device, then moved to the options' device, so a CPU generator gives
// the same probes whatever the operator's device.
torch::Tensor rademacher(int64_t n, at::Generator& generator, torch::TensorOptions options);

// ||H_ij||_F^2 = E ||H_ij v_j||^2 with Rademacher v_j supported on block j: one product gives
// column j of the block matrix for every i.
struct BlockNormEstimate {
  torch::Tensor norms;      // (B, B) sqrt of the mean
  torch::Tensor sq_mean;    // (B, B) mean of ||H_ij v_j||^2
  torch::Tensor sq_stderr;  // (B, B) standard error of sq_mean
  torch::Tensor stderr_norms;  // (B, B) delta method: sq_stderr / (2 norms)
};
BlockNormEstimate hutchinson_block_norms(const MatVec& op, const Partition& partition,
                                         int64_t samples, at::Generator& generator,
                                         torch::TensorOptions options);

// The ratio of mean squares R = mean_{i != j} ||H_ij||_F^2 / mean_i ||H_ii||_F^2 over the row
// blocks of one tensor (`tensor_rows` blocks of `width` coordinates from `begin` in the
// operator's `total`), from a sample of its rows: for a sampled row j and a draw, v Rademacher
// on block j gives ||(H v)_i||^2, whose mean is ||H_ij||_F^2, for every row i at once (one
// product). R is taken over the `candidates` rows (indices; e.g. those with a non-zero
// gradient, when the others' blocks are zero), `sampled` of them drawn uniformly without
// replacement: mean_j sum_{i != j} ||H_ij||^2 / (candidates - 1) over mean_j ||H_jj||^2, its
// standard error by the delta method over the sampled rows.
struct SampledRatioEstimate {
  double ratio = 0.0, ratio_stderr = 0.0;
  int64_t sampled = 0;  // rows j probed
};
SampledRatioEstimate sampled_row_ratio(const MatVec& op, int64_t total, int64_t begin,
                                       int64_t tensor_rows, int64_t width,
                                       const torch::Tensor& candidates, int64_t sampled,
                                       int64_t draws, at::Generator& generator,
                                       torch::TensorOptions options);

struct LanczosResult {
  torch::Tensor alpha;  // (k) diagonal of the tridiagonal T
  torch::Tensor beta;   // (k-1) off-diagonal
  torch::Tensor ritz_values;   // (k) eigenvalues of T, ascending
  torch::Tensor ritz_weights;  // (k) squared first components of T's eigenvectors (sum 1)
};
// k Lanczos steps from the start vector v0, re-orthogonalising every new vector against all
// previous ones twice (without it ghost copies of the top eigenvalue appear).
LanczosResult lanczos(const MatVec& op, const torch::Tensor& v0, int64_t steps);

// Largest-k Ritz values (descending) after `steps` Lanczos steps from a Rademacher start.
torch::Tensor top_eigenvalues(const MatVec& op, int64_t dim, int64_t k, int64_t steps,
                              at::Generator& generator, torch::TensorOptions options);

struct ScalarEstimate {
  double value = 0.0;
  double stderr_value = 0.0;  // 0 when not available
};
// tr H ~ mean of v^T H v over Rademacher v.
ScalarEstimate trace_hutchinson(const MatVec& op, int64_t dim, int64_t samples,
                                at::Generator& generator, torch::TensorOptions options);
// Hutch++ with `products` matrix-vector products (a third for the sketch, a third to
// project, a third for Hutchinson on the remainder).
double trace_hutchpp(const MatVec& op, int64_t dim, int64_t products, at::Generator& generator,
                     torch::TensorOptions options);

// Spectral density as nodes and weights (weights sum to 1): SLQ averages Lanczos quadratures
// over Rademacher starts.
struct SpectralDensity {
  torch::Tensor nodes;    // (M)
  torch::Tensor weights;  // (M)
  // Gaussian-smoothed density on `grid` (G), integrating to ~1.
  torch::Tensor smooth(const torch::Tensor& grid, double sigma) const;
};
SpectralDensity slq_density(const MatVec& op, int64_t dim, int64_t steps, int64_t probes,
                            at::Generator& generator, torch::TensorOptions options);
// Exact density (eigenvalues, equal weights) of a symmetric matrix.
SpectralDensity exact_density(const torch::Tensor& matrix);

// Jensen-Shannon distance sqrt(JS) (log base 2, so in [0, 1]) between two densities smoothed
// on a common grid of `points` over their joint support.
double js_distance(const SpectralDensity& a, const SpectralDensity& b, double sigma,
                   int64_t points = 512);

}  // namespace blockopt::hessian
