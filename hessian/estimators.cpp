#include <blockopt/hessian/estimators.h>

#include <cmath>

namespace blockopt::hessian {

MatVec as_matvec(HessianOperator& op) {
  return [&op](const torch::Tensor& v) { return op.hvp(v); };
}

MatVec as_matvec(const torch::Tensor& matrix) {
  return [matrix](const torch::Tensor& v) { return matrix.mv(v); };
}

MatVec restrict_to(const MatVec& op, const Block& block, int64_t total,
                   torch::TensorOptions options) {
  return [op, block, total, options](const torch::Tensor& v) {
    auto full = torch::zeros({total}, options);
    full.slice(0, block.begin, block.end).copy_(v);
    return op(full).slice(0, block.begin, block.end);
  };
}

namespace {
// Rademacher entries of any shape (rademacher is the (n) case).
torch::Tensor rademacher_tensor(torch::IntArrayRef shape, at::Generator& generator,
                                torch::TensorOptions options) {
  return (torch::randint(0, 2, shape, generator, options.device(generator.device())) * 2 - 1)
      .to(options.device());
}
}  // namespace

torch::Tensor rademacher(int64_t n, at::Generator& generator, torch::TensorOptions options) {
  return rademacher_tensor({n}, generator, options);
}

BlockNormEstimate hutchinson_block_norms(const MatVec& op, const Partition& partition,
                                         int64_t samples, at::Generator& generator,
                                         torch::TensorOptions options) {
  TORCH_CHECK(samples >= 2, "hutchinson_block_norms: need at least 2 samples for an error bar");
  const int64_t nb = partition.size();
  auto index = partition.block_index(options.device());
  auto covered = index.ge(0);
  auto idx = index.masked_select(covered);
  const auto accumulator = options.dtype(torch::kDouble);
  auto sum = torch::zeros({nb, nb}, accumulator);
  auto sum_sq = torch::zeros({nb, nb}, accumulator);
  for (int64_t j = 0; j < nb; ++j) {
    const auto& blk = partition.blocks[j];
    for (int64_t s = 0; s < samples; ++s) {
      auto v = torch::zeros({partition.total}, options);
      v.slice(0, blk.begin, blk.end).copy_(rademacher(blk.end - blk.begin, generator, options));
      auto hv_sq = op(v).to(torch::kDouble).square().masked_select(covered);
      auto column = torch::zeros({nb}, accumulator).index_add_(0, idx, hv_sq);  // ||H_ij v_j||^2
      sum.select(1, j).add_(column);
      sum_sq.select(1, j).add_(column.square());
    }
  }
  const auto n = static_cast<double>(samples);
  BlockNormEstimate e;
  e.sq_mean = sum / n;
  auto var = ((sum_sq - n * e.sq_mean.square()) / (n - 1)).clamp_min(0.0);
  e.sq_stderr = (var / n).sqrt();
  e.norms = e.sq_mean.sqrt();
  e.stderr_norms = e.sq_stderr / (2 * e.norms).clamp_min(1e-300);
  return e;
}

SampledRatioEstimate sampled_row_ratio(const MatVec& op, int64_t total, int64_t begin,
                                       int64_t tensor_rows, int64_t width,
                                       const torch::Tensor& candidates, int64_t sampled,
                                       int64_t draws, at::Generator& generator,
                                       torch::TensorOptions options) {
  const int64_t rows = candidates.size(0);
  TORCH_CHECK(rows >= 2 && sampled >= 2 && draws >= 1, "sampled_row_ratio: needs 2 or more candidate ",
              "and sampled rows and a draw, got ", rows, ", ", sampled, ", ", draws);
  sampled = std::min(sampled, rows);
  const auto order = torch::randperm(rows, generator, torch::TensorOptions().dtype(torch::kLong));
  const auto candidate_rows = candidates.to(torch::kLong);
  std::vector<double> off, diagonal;  // per sampled row j, mean over its draws
  for (int64_t k = 0; k < sampled; ++k) {
    const int64_t j = candidate_rows[order[k].item<int64_t>()].item<int64_t>();
    double off_j = 0.0, diagonal_j = 0.0;
    for (int64_t d = 0; d < draws; ++d) {
      auto v = torch::zeros({total}, options);
      v.slice(0, begin + j * width, begin + (j + 1) * width).copy_(rademacher(width, generator, options));
      // ||(H v)_i||^2 for every row i of the tensor (tensor_rows, width)
      const auto row_squares = op(v).slice(0, begin, begin + tensor_rows * width).view({tensor_rows, width})
                                   .to(torch::kDouble).square().sum(1);
      const double own = row_squares[j].item<double>();
      diagonal_j += own / static_cast<double>(draws);
      off_j += (row_squares.sum().item<double>() - own) / static_cast<double>(draws);
    }
    off.push_back(off_j / static_cast<double>(rows - 1));
    diagonal.push_back(diagonal_j);
  }
  const auto n = static_cast<double>(sampled);
  double mo = 0, md = 0;
  for (int64_t k = 0; k < sampled; ++k) {
    mo += off[k] / n;
    md += diagonal[k] / n;
  }
  double var_o = 0, var_d = 0, cov = 0;  // of one sampled row
  for (int64_t k = 0; k < sampled; ++k) {
    var_o += (off[k] - mo) * (off[k] - mo) / (n - 1);
    var_d += (diagonal[k] - md) * (diagonal[k] - md) / (n - 1);
    cov += (off[k] - mo) * (diagonal[k] - md) / (n - 1);
  }
  SampledRatioEstimate e;
  e.sampled = sampled;
  e.ratio = mo / md;
  // Var(mo / md) ~ (Var(o) / md^2 + mo^2 Var(d) / md^4 - 2 mo Cov(o, d) / md^3) / n, over the
  // sampled rows (their spread holds the draws' noise too; no finite-population correction,
  // so the interval is conservative when most rows are probed).
  const double var = (var_o / (md * md) + mo * mo * var_d / std::pow(md, 4) - 2.0 * mo * cov / std::pow(md, 3)) / n;
  e.ratio_stderr = std::sqrt(std::max(var, 0.0));
  return e;
}

LanczosResult lanczos(const MatVec& op, const torch::Tensor& v0, int64_t steps) {
  const int64_t dim = v0.size(0);
  steps = std::min(steps, dim);
  auto basis = torch::zeros({steps, dim}, v0.options());  // (k, P) orthonormal rows
  std::vector<double> alpha, beta;
  auto q = v0 / v0.norm();
  for (int64_t k = 0; k < steps; ++k) {
    basis[k].copy_(q);
    auto w = op(q);
    const double a = w.dot(q).item<double>();
    alpha.push_back(a);
    w = w - a * q;
    if (k > 0) w = w - beta.back() * basis[k - 1];
    auto done = basis.slice(0, 0, k + 1);
    for (int pass = 0; pass < 2; ++pass) w = w - done.t().mv(done.mv(w));  // full reorth.
    const double b = w.norm().item<double>();
    if (k + 1 == steps || b <= 1e-10 * std::abs(a) + 1e-300) break;  // invariant subspace
    beta.push_back(b);
    q = w / b;
  }
  LanczosResult r;
  auto dbl = torch::TensorOptions().dtype(torch::kDouble);
  r.alpha = torch::tensor(alpha, dbl);
  r.beta = torch::tensor(beta, dbl);
  auto t = torch::diag(r.alpha);
  if (!beta.empty()) t = t + torch::diag(r.beta, 1) + torch::diag(r.beta, -1);
  auto [values, vectors] = torch::linalg_eigh(t);
  r.ritz_values = values;
  r.ritz_weights = vectors[0].square();
  return r;
}

torch::Tensor top_eigenvalues(const MatVec& op, int64_t dim, int64_t k, int64_t steps,
                              at::Generator& generator, torch::TensorOptions options) {
  auto result = lanczos(op, rademacher(dim, generator, options), steps);
  auto values = result.ritz_values.flip(0);
  return values.slice(0, 0, std::min<int64_t>(k, values.size(0)));
}

ScalarEstimate trace_hutchinson(const MatVec& op, int64_t dim, int64_t samples,
                                at::Generator& generator, torch::TensorOptions options) {
  std::vector<double> values;
  for (int64_t s = 0; s < samples; ++s) {
    auto v = rademacher(dim, generator, options);
    values.push_back(v.dot(op(v)).item<double>());
  }
  auto t = torch::tensor(values, torch::kDouble);
  ScalarEstimate e{t.mean().item<double>(), 0.0};
  if (samples > 1) e.stderr_value = t.std().item<double>() / std::sqrt(static_cast<double>(samples));
  return e;
}

double trace_hutchpp(const MatVec& op, int64_t dim, int64_t products, at::Generator& generator,
                     torch::TensorOptions options) {
  const int64_t k = std::max<int64_t>(1, products / 3);
  auto apply = [&](const torch::Tensor& m) {  // (P, k) -> H m
    std::vector<torch::Tensor> cols;
    for (int64_t i = 0; i < m.size(1); ++i) cols.push_back(op(m.select(1, i).contiguous()));
    return torch::stack(cols, 1);
  };
  auto sketch = rademacher_tensor({dim, k}, generator, options);
  auto q = std::get<0>(torch::linalg_qr(apply(sketch)));  // (P, k) basis of the top range
  const double low_rank = (q * apply(q)).sum().item<double>();  // tr(Q^T H Q)
  auto g = rademacher_tensor({dim, k}, generator, options);
  g = g - q.mm(q.t().mm(g));  // (I - QQ^T) G
  const double rest = (g * apply(g)).sum().item<double>() / static_cast<double>(k);
  return low_rank + rest;
}

torch::Tensor SpectralDensity::smooth(const torch::Tensor& grid, double sigma) const {
  auto diff = (grid.to(torch::kDouble).unsqueeze(1) - nodes.unsqueeze(0)) / sigma;  // (G, M)
  auto kernel = torch::exp(-0.5 * diff.square()) / (sigma * std::sqrt(2 * M_PI));
  return kernel.mv(weights);
}

SpectralDensity slq_density(const MatVec& op, int64_t dim, int64_t steps, int64_t probes,
                            at::Generator& generator, torch::TensorOptions options) {
  std::vector<torch::Tensor> nodes, weights;
  for (int64_t p = 0; p < probes; ++p) {
    auto r = lanczos(op, rademacher(dim, generator, options), steps);
    nodes.push_back(r.ritz_values);
    weights.push_back(r.ritz_weights / static_cast<double>(probes));
  }
  return {torch::cat(nodes), torch::cat(weights)};
}

SpectralDensity exact_density(const torch::Tensor& matrix) {
  auto values = torch::linalg_eigvalsh(matrix.to(torch::kDouble));
  return {values, torch::full_like(values, 1.0 / static_cast<double>(values.size(0)))};
}

double js_distance(const SpectralDensity& a, const SpectralDensity& b, double sigma,
                   int64_t points) {
  const double lo = std::min(a.nodes.min().item<double>(), b.nodes.min().item<double>()) - 4 * sigma;
  const double hi = std::max(a.nodes.max().item<double>(), b.nodes.max().item<double>()) + 4 * sigma;
  auto grid = torch::linspace(lo, hi, points, torch::kDouble);
  auto p = a.smooth(grid, sigma);
  auto q = b.smooth(grid, sigma);
  p = p / p.sum();
  q = q / q.sum();
  // KL(x || m) in bits with m = (p + q) / 2, written x log2(2x / (p + q)), 0 log 0 = 0.
  // NOTE: not x / m: where the smoothed tails are the smallest subnormal and 0, (p + q) / 2
  // rounds to 0 and x / m is inf; p + q >= x never underflows.
  const auto sum = p + q;
  auto kl = [&sum](const torch::Tensor& x) {
    return torch::where(x > 0, x * torch::log2(2 * x / sum), torch::zeros_like(x)).sum().item<double>();
  };
  const double js = 0.5 * kl(p) + 0.5 * kl(q);
  return std::sqrt(std::max(js, 0.0));
}

}  // namespace blockopt::hessian
