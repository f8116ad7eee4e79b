// Matrix-free estimators against the exact answer (full Hessian + eigh) on a small net.
// Statistical tolerances are multiples of the estimators' own standard errors, fixed seeds.
#include <blockopt/hessian/estimators.h>
#include <blockopt/hessian/mlp_hessian.h>

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>

namespace bh = blockopt::hessian;
namespace bm = blockopt::models;

namespace {

class HessianEstimators : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(5);
    weights_ = {torch::randn({5, 6}, torch::kDouble).div(std::sqrt(6.0)).requires_grad_(true),
                torch::randn({4, 5}, torch::kDouble).div(std::sqrt(5.0)).requires_grad_(true)};
    x_ = torch::randn({100, 6}, torch::kDouble);
    y_ = torch::randint(4, {100}, torch::kLong);
    op_ = std::make_unique<bh::HessianOperator>(
        [this] { return bm::compute_loss(bh::mlp_forward(weights_, bm::Activation::Tanh, x_), y_,
                                         bm::Loss::CrossEntropy); },
        weights_);
    h_ = bh::full_hessian(*op_);
    eigenvalues_ = torch::linalg_eigvalsh(h_);  // ascending
    infos_ = {{"layers.0.weight", {5, 6}}, {"layers.1.weight", {4, 5}}};
  }
  int64_t dim() const { return op_->size(); }
  torch::TensorOptions options() const { return torch::TensorOptions().dtype(torch::kDouble); }

  std::vector<torch::Tensor> weights_;
  torch::Tensor x_, y_, h_, eigenvalues_;
  std::unique_ptr<bh::HessianOperator> op_;
  std::vector<bh::ParamInfo> infos_;
  at::Generator gen_ = at::make_generator<at::CPUGeneratorImpl>(123);
};

}  // namespace

TEST_F(HessianEstimators, HutchinsonBlockNormsWithinStandardErrors) {
  auto part = bh::make_partition("per_row", infos_);
  auto exact = bh::block_norms(h_, part).square();
  auto est = bh::hutchinson_block_norms(bh::as_matvec(*op_), part, 400, gen_, options());
  // 81 entries, each within 4.5 standard errors (two-sided p ~ 7e-6 per entry).
  auto z = (est.sq_mean - exact).abs() / (est.sq_stderr + 1e-15);
  EXPECT_LT(z.max().item<double>(), 4.5);
}

// A single-parameter block j is probed by v_j = +-1, so ||H_ij v_j||^2 = ||H_ij||^2 for every
// probe: its whole column of estimates has zero variance and must equal the exact block norms.
TEST_F(HessianEstimators, HutchinsonIsExactForSingleParameterBlocks) {
  auto part = bh::Partition::custom(
      {{0, 1, 0, ""}, {1, 6, 0, ""}, {6, 30, 0, ""}, {30, 31, 1, ""}, {31, 50, 1, ""}}, dim());
  auto exact = bh::block_norms(h_, part).square();
  auto est = bh::hutchinson_block_norms(bh::as_matvec(*op_), part, 20, gen_, options());
  for (int64_t j : {0, 3}) {
    EXPECT_TRUE(torch::allclose(est.sq_mean.select(1, j), exact.select(1, j), 1e-12, 0.0))
        << "block " << j << ": " << est.sq_mean.select(1, j) << exact.select(1, j);
    // Zero up to the rounding of the one-pass variance: ~eps x^2, so sqrt(eps) x ~ 1e-8 x.
    EXPECT_LT(est.sq_stderr.select(1, j).max().item<double>(),
              1e-6 * exact.select(1, j).max().item<double>());
  }
  // A multi-parameter block's probes do vary: the error bars are not zero everywhere.
  EXPECT_GT(est.sq_stderr.select(1, 2).max().item<double>(), 0.0);
}

TEST_F(HessianEstimators, LanczosWithFullReorthogonalisationRecoversTheSpectrum) {
  auto r = bh::lanczos(bh::as_matvec(*op_), bh::rademacher(dim(), gen_, options()), dim());
  // CE is invariant to adding a constant to all logits, so H has a repeated zero eigenvalue
  // and the Krylov space stops short of P (invariant subspace): every Ritz value is an
  // eigenvalue, and the top ones are all found.
  const int64_t k = r.ritz_values.size(0);
  ASSERT_GT(k, dim() - 10);
  auto distance = (r.ritz_values.unsqueeze(1) - eigenvalues_.unsqueeze(0)).abs().amin(1);
  EXPECT_LT(distance.max().item<double>(), 1e-9);
  EXPECT_TRUE(torch::allclose(r.ritz_values.flip(0).slice(0, 0, 10),
                              eigenvalues_.flip(0).slice(0, 0, 10), 1e-8, 1e-10));
  EXPECT_NEAR(r.ritz_weights.sum().item<double>(), 1.0, 1e-12);
  // No ghost copies of the top eigenvalue.
  const double top = eigenvalues_[-1].item<double>();
  EXPECT_EQ((r.ritz_values - top).abs().lt(1e-6 * top).sum().item<int64_t>(), 1);
}

TEST_F(HessianEstimators, TopEigenvaluesConverge) {
  auto top = bh::top_eigenvalues(bh::as_matvec(*op_), dim(), 3, 30, gen_, options());
  auto exact = eigenvalues_.flip(0).slice(0, 0, 3);
  EXPECT_TRUE(torch::allclose(top, exact, 1e-6, 1e-10)) << top << exact;
}

TEST_F(HessianEstimators, TraceHutchinsonAndHutchPlusPlus) {
  const double exact = h_.trace().item<double>();
  auto est = bh::trace_hutchinson(bh::as_matvec(*op_), dim(), 300, gen_, options());
  EXPECT_LT(std::abs(est.value - exact), 4.0 * est.stderr_value);
  // Rademacher Hutchinson variance is 2 (||H||_F^2 - sum H_ii^2) per sample.
  const double sd = std::sqrt(2.0 * (h_.square().sum() - h_.diagonal().square().sum()).item<double>());
  EXPECT_NEAR(est.stderr_value, sd / std::sqrt(300.0), 0.3 * sd / std::sqrt(300.0));
  // Hutch++ guarantees error <= eps ||H||_* with O(1/eps) products; with 90 products a
  // 1e-2 ||H||_* band is loose (measured 1.5e-3 with this seed).
  const double hpp = bh::trace_hutchpp(bh::as_matvec(*op_), dim(), 90, gen_, options());
  EXPECT_LT(std::abs(hpp - exact), 1e-2 * eigenvalues_.abs().sum().item<double>());
}

TEST_F(HessianEstimators, SlqMomentsAndBlockDensities) {
  const int64_t probes = 100;
  auto density = bh::slq_density(bh::as_matvec(*op_), dim(), dim(), probes, gen_, options());
  EXPECT_NEAR(density.weights.sum().item<double>(), 1.0, 1e-10);
  // With P Lanczos steps the quadrature is exact for polynomials, so moment k is a Hutchinson
  // estimate of tr(H^k)/P; tolerance 5 of its standard deviations.
  for (int k = 1; k <= 2; ++k) {
    auto hk = torch::linalg_matrix_power(h_, k);
    const double exact = hk.trace().item<double>() / dim();
    const double sd = std::sqrt(2.0 * (hk.square().sum() - hk.diagonal().square().sum()).item<double>()) /
                      dim() / std::sqrt(static_cast<double>(probes));
    const double got = (density.weights * density.nodes.pow(k)).sum().item<double>();
    EXPECT_NEAR(got, exact, 5.0 * sd) << "moment " << k;
  }
  // Principal block of the output layer: SLQ density close to the exact one.
  auto part = bh::make_partition("per_tensor", infos_);
  const auto& blk = part.blocks[1];
  auto block_op = bh::restrict_to(bh::as_matvec(*op_), blk, dim(), options());
  auto block_slq = bh::slq_density(block_op, blk.end - blk.begin, 20, 50, gen_, options());
  auto block_exact = bh::exact_density(bh::principal_block(h_, blk));
  const double sigma = 0.05 * (block_exact.nodes.max() - block_exact.nodes.min()).item<double>();
  EXPECT_LT(bh::js_distance(block_slq, block_exact, sigma), 0.15);
}

TEST_F(HessianEstimators, JensenShannonDistanceProperties) {
  auto part = bh::make_partition("per_tensor", infos_);
  auto a = bh::exact_density(bh::principal_block(h_, part.blocks[0]));
  auto b = bh::exact_density(bh::principal_block(h_, part.blocks[1]));
  const double sigma = 0.01;
  EXPECT_NEAR(bh::js_distance(a, a, sigma), 0.0, 1e-7);
  const double ab = bh::js_distance(a, b, sigma);
  EXPECT_NEAR(ab, bh::js_distance(b, a, sigma), 1e-12);
  EXPECT_GT(ab, 0.0);
  EXPECT_LE(ab, 1.0);
  bh::SpectralDensity far{a.nodes + 100.0, a.weights};
  EXPECT_NEAR(bh::js_distance(a, far, sigma), 1.0, 1e-6);
}

// Point masses 90-91 sigma apart (the row_heterogeneity probe's sigma is 1% of the range):
// disjoint to double precision, so sqrt(JS) = 1. Over these offsets the smoothed tails pass
// through the subnormals on the grid, which made (p + q) / 2 round to 0 for about one offset
// in eight before js_distance divided by p + q.
TEST(HessianEstimatorsJs, JensenShannonDistanceOfFarApartPointMassesIsOne) {
  const double sigma = 0.01;
  const auto dbl = torch::TensorOptions().dtype(torch::kFloat64);
  const bh::SpectralDensity origin{torch::zeros({1}, dbl), torch::ones({1}, dbl)};
  for (int i = 0; i < 100; ++i) {
    const double offset = (90.0 + i / 100.0) * sigma;
    const bh::SpectralDensity far{torch::full({1}, offset, dbl), torch::ones({1}, dbl)};
    EXPECT_NEAR(bh::js_distance(origin, far, sigma), 1.0, 1e-12) << "offset " << offset;
  }
}

namespace {

// R = mean_{i != j} ||H_ij||^2 / mean_i ||H_ii||^2 over `rows` blocks of `width` from `begin`.
double exact_row_ratio(const torch::Tensor& h, int64_t begin, int64_t rows, int64_t width) {
  const auto t = h.slice(0, begin, begin + rows * width).slice(1, begin, begin + rows * width);
  double total = t.square().sum().item<double>(), diagonal = 0.0;
  for (int64_t i = 0; i < rows; ++i) {
    diagonal += t.slice(0, i * width, (i + 1) * width).slice(1, i * width, (i + 1) * width)
                    .square().sum().item<double>();
  }
  return (total - diagonal) / static_cast<double>(rows - 1) / diagonal;
}

}  // namespace

// One-coordinate rows: v_j = +-1 gives ||(H v)_i||^2 = H_ij^2 exactly, so with every row probed
// the estimate is R itself.
TEST_F(HessianEstimators, SampledRowRatioIsExactForOneCoordinateRows) {
  const auto all = torch::arange(dim(), torch::kLong);
  const auto e = bh::sampled_row_ratio(bh::as_matvec(*op_), dim(), 0, dim(), 1, all, dim(), 1, gen_, options());
  EXPECT_NEAR(e.ratio, exact_row_ratio(h_, 0, dim(), 1), 1e-12 * e.ratio);
  EXPECT_EQ(e.sampled, dim());
}

// The first layer's 5 rows of width 6 (3 sampled, and all 5), 200 draws each: within 4.5
// standard errors of the exact R.
TEST_F(HessianEstimators, SampledRowRatioWithinStandardErrors) {
  const double exact = exact_row_ratio(h_, 0, 5, 6);
  for (int64_t sampled : {3, 5}) {
    const auto e = bh::sampled_row_ratio(bh::as_matvec(*op_), dim(), 0, 5, 6, torch::arange(5, torch::kLong),
                                         sampled, 200, gen_, options());
    EXPECT_LT(std::abs(e.ratio - exact), 4.5 * e.ratio_stderr) << sampled << ": " << e.ratio << " vs " << exact;
    EXPECT_GT(e.ratio_stderr, 0.0);
  }
}
