// Partitions, block norms and the paper's theory on small nets (Hessian at LeCun init).
#include <blockopt/hessian/mlp_hessian.h>
#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/partition.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace bh = blockopt::hessian;
namespace bm = blockopt::models;

namespace {

struct Setting {
  std::vector<torch::Tensor> weights;
  torch::Tensor x, y;
  std::vector<bh::ParamInfo> infos;
};

// x ~ N(0, I_d), random labels, W entries N(0, 1/fan_in).
Setting gaussian_setting(std::vector<int64_t> widths, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  Setting s;
  for (size_t l = 0; l + 1 < widths.size(); ++l) {
    s.weights.push_back(torch::randn({widths[l + 1], widths[l]}, torch::kDouble) /
                        std::sqrt(static_cast<double>(widths[l])));
    s.infos.push_back({"layers." + std::to_string(l) + ".weight", {widths[l + 1], widths[l]}});
  }
  s.x = torch::randn({n, widths.front()}, torch::kDouble);
  s.y = torch::randint(widths.back(), {n}, torch::kLong);
  return s;
}

// Parameter tensors of gaussian_setting's nets: a linear model is one layer; a 1-hidden-layer
// net has its hidden layer (one block per hidden unit) first, its output layer (one block per
// class) second.
constexpr int64_t kLinearLayer = 0, kHiddenLayer = 0, kOutputLayer = 1;

// Mean of r_ij^2 over i != j with both blocks rows of tensor `t` (per-row partition).
double mean_sq_ratio(const Setting& s, bm::Loss loss, int64_t t) {
  auto h = bh::mlp_hessian_closed_form(s.weights, bm::Activation::ReLU, s.x, s.y, loss);
  auto part = bh::make_partition("per_row", s.infos);
  return bh::off_diagonal_ratios(bh::block_norms(h, part), part).squared_by_tensor_pair[t][t].item<double>();
}

// Sample mean and standard error of the mean.
std::pair<double, double> mean_and_standard_error(const std::vector<double>& values) {
  const double n = static_cast<double>(values.size());
  double mean = 0.0, sum_sq = 0.0;
  for (double v : values) mean += v / n;
  for (double v : values) sum_sq += (v - mean) * (v - mean);
  return {mean, std::sqrt(sum_sq / (n - 1.0) / n)};
}

}  // namespace

TEST(HessianPartition, BuiltInPartitionsCoverTheParameters) {
  std::vector<bh::ParamInfo> infos = {{"attn.q_proj.weight", {8, 3}},
                                      {"attn.k_proj.weight", {8, 3}},
                                      {"mlp.bias", {5}}};
  auto tensors = bh::make_partition("per_tensor", infos);
  ASSERT_EQ(tensors.size(), 3);
  EXPECT_EQ(tensors.blocks[1].begin, 24);
  EXPECT_EQ(tensors.total, 53);
  auto rows = bh::make_partition("per_row", infos);
  EXPECT_EQ(rows.size(), 8 + 8 + 1);
  EXPECT_EQ(rows.blocks[9].begin, 27);
  EXPECT_EQ(rows.blocks[9].end, 30);
  auto heads = bh::make_partition("per_head", infos, 4);  // 2 heads each for q and k, bias whole
  ASSERT_EQ(heads.size(), 5);
  EXPECT_EQ(heads.blocks[1].begin, 12);
  EXPECT_EQ(heads.blocks[4].tensor, 2);
  // Per-tensor layouts (name, block size) reproduce per_row for matrices.
  auto shared = bh::Partition::from_layouts(infos, {{"q", 3}, {"k", 3}, {"bias", 5}});
  ASSERT_EQ(shared.size(), rows.size());
  for (int64_t b = 0; b < rows.size(); ++b) {
    EXPECT_EQ(shared.blocks[b].begin, rows.blocks[b].begin);
    EXPECT_EQ(shared.blocks[b].end, rows.blocks[b].end);
  }
  EXPECT_THROW(bh::Partition::custom({{0, 5, 0, ""}, {4, 8, 0, ""}}, 10), c10::Error);
}

// block_index (a prefix sum of block marks, on any device) against a loop over coordinates:
// random partitions with gaps, blocks in shuffled order.
TEST(HessianPartition, BlockIndexMatchesACoordinateLoop) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<bh::Block> blocks;
    int64_t total = 0;
    for (int b = 0; b < 8; ++b) {
      total += static_cast<int64_t>(rng() % 3);  // a gap of 0-2 coordinates
      const auto size = 1 + static_cast<int64_t>(rng() % 5);
      blocks.push_back({total, total + size, 0, ""});
      total += size;
    }
    total += static_cast<int64_t>(rng() % 3);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    const auto part = bh::Partition::custom(blocks, total);
    std::vector<int64_t> expected(static_cast<size_t>(total), -1);
    for (int64_t b = 0; b < part.size(); ++b) {
      for (auto i = part.blocks[b].begin; i < part.blocks[b].end; ++i) expected[i] = b;
    }
    EXPECT_TRUE(torch::equal(part.block_index(), torch::tensor(expected))) << "trial " << trial;
  }
  EXPECT_THROW(bh::Partition::custom({{4, 6, 0, ""}, {0, 10, 0, ""}}, 10), c10::Error);  // nested
  EXPECT_THROW(bh::Partition::custom({{0, 3, 0, ""}, {3, 11, 0, ""}}, 10), c10::Error);  // past P
  EXPECT_THROW(bh::Partition::custom({{2, 2, 0, ""}}, 10), c10::Error);                  // empty
  EXPECT_EQ(bh::Partition::custom({}, 3).block_index().eq(-1).sum().item<int64_t>(), 3);
}

TEST(HessianPartition, BlockNormsAndRatiosMatchDirectSlices) {
  torch::manual_seed(0);
  auto a = torch::randn({12, 12}, torch::kDouble);
  auto h = a + a.t();
  auto part = bh::Partition::custom({{0, 3, 0, ""}, {3, 7, 0, ""}, {9, 12, 1, ""}}, 12);
  auto norms = bh::block_norms(h, part);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      const auto& bi = part.blocks[i];
      const auto& bj = part.blocks[j];
      auto direct = h.slice(0, bi.begin, bi.end).slice(1, bj.begin, bj.end).norm().item<double>();
      EXPECT_NEAR(norms[i][j].item<double>(), direct, 1e-12);
    }
  }
  auto s = bh::off_diagonal_ratios(norms, part);
  EXPECT_NEAR(s.ratio[0][2].item<double>(), (norms[0][2] / norms[0][0]).item<double>(), 1e-12);
  EXPECT_DOUBLE_EQ(s.ratio[1][1].item<double>(), 0.0);
  EXPECT_NEAR(s.max, s.ratio.max().item<double>(), 1e-15);
  // Tensor 0 holds blocks 0 and 1: its within-tensor mean is the mean of r_01 and r_10.
  EXPECT_NEAR(s.by_tensor_pair[0][0].item<double>(),
              (s.ratio[0][1] + s.ratio[1][0]).item<double>() / 2, 1e-12);
  EXPECT_NEAR(s.squared_by_tensor_pair[0][1].item<double>(),
              (s.ratio[0][2].square() + s.ratio[1][2].square()).item<double>() / 2, 1e-12);
  double squares = 0.0;
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 3; ++j) squares += i == j ? 0.0 : std::pow(s.ratio[i][j].item<double>(), 2);
  }
  EXPECT_NEAR(s.squared_mean, squares / 6, 1e-12);
  EXPECT_TRUE(torch::equal(bh::principal_block(h, part.blocks[1]), h.slice(0, 3, 7).slice(1, 3, 7)));
}

// A block with H_ii = 0 (a ReLU unit dead on every sample) has no ratio: its row is left out
// of the means and counted, instead of turning them into NaN.
TEST(HessianPartition, BlocksWithZeroDiagonalAreLeftOutOfTheRatios) {
  auto part = bh::Partition::custom({{0, 2, 0, ""}, {2, 4, 0, ""}, {4, 6, 0, ""}}, 6);
  auto norms = torch::tensor({{2.0, 1.0, 0.5}, {0.0, 0.0, 0.0}, {1.0, 0.0, 4.0}}, torch::kDouble);
  auto s = bh::off_diagonal_ratios(norms, part);
  EXPECT_EQ(s.rows_without_ratio, 1);
  EXPECT_TRUE(torch::isfinite(s.ratio).all().item<bool>());
  // r_01 = 0.5, r_02 = 0.25, r_20 = 0.25, r_21 = 0: mean over the 4 defined pairs.
  EXPECT_DOUBLE_EQ(s.mean, (0.5 + 0.25 + 0.25 + 0.0) / 4);
  EXPECT_DOUBLE_EQ(s.squared_mean, (0.25 + 0.0625 + 0.0625) / 4);
  EXPECT_DOUBLE_EQ(s.by_tensor_pair[0][0].item<double>(), s.mean);
  // The theorems' ratio of means counts every block: off-diagonal squares 1 + 0.25 + 0 + 0 +
  // 1 + 0 over 6 pairs, diagonal squares 4 + 0 + 16 over 3 blocks.
  EXPECT_DOUBLE_EQ(s.squared_norm_ratio, (2.25 / 6) / (20.0 / 3));
  EXPECT_DOUBLE_EQ(s.squared_norm_ratio_by_tensor_pair[0][0].item<double>(), s.squared_norm_ratio);
}

// By tensor pair, the ratio of means divides by the row tensor's mean diagonal square.
TEST(HessianPartition, SquaredNormRatioByTensorPair) {
  auto part = bh::Partition::custom({{0, 1, 0, ""}, {1, 2, 0, ""}, {2, 3, 1, ""}}, 3);
  auto norms = torch::tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}, {7.0, 8.0, 9.0}}, torch::kDouble);
  auto s = bh::off_diagonal_ratios(norms, part);
  const double diag0 = (1.0 + 25.0) / 2, diag1 = 81.0;
  EXPECT_DOUBLE_EQ(s.squared_norm_ratio_by_tensor_pair[0][0].item<double>(), (4.0 + 16.0) / 2 / diag0);
  EXPECT_DOUBLE_EQ(s.squared_norm_ratio_by_tensor_pair[0][1].item<double>(), (9.0 + 36.0) / 2 / diag0);
  EXPECT_DOUBLE_EQ(s.squared_norm_ratio_by_tensor_pair[1][0].item<double>(), (49.0 + 64.0) / 2 / diag1);
  EXPECT_DOUBLE_EQ(s.squared_norm_ratio_by_tensor_pair[1][1].item<double>(), 0.0);  // no pair i != j
  EXPECT_DOUBLE_EQ(s.squared_norm_ratio, (4.0 + 9.0 + 16.0 + 36.0 + 49.0 + 64.0) / 6 / ((1.0 + 25.0 + 81.0) / 3));
}

// Theory 1: linear + CE: mean r_ij -> 1/(C-1) as the softmax output becomes uniform.
// Exact at any N, d, C: each sample's softmax Hessian has zero row sums, so
// sum_{j != i} H_ij = -H_ii and, by the triangle inequality, (C-1) mean r_ij >= 1, with
// equality when all H_ij are parallel: p uniform (logit variance s = 0) gives
// H_ij = -X / C^2, H_ii = (C-1) X / C^2 for X = mean x x^T. The excess over 1 comes from p
// depending on x through the logits, so it grows with s from 0 (LeCun init: s = 1).
TEST(HessianTheory, LinearCrossEntropyRatioIsOneOverCMinusOne) {
  for (int64_t classes : {5, 10}) {
    auto s = gaussian_setting({5, classes}, 20000, 1);
    const auto lecun = s.weights[0].clone();
    double previous_excess = -1.0;
    for (double scale : {0.0, 0.25, 0.5, 1.0}) {  // logit variance s = scale^2
      s.weights[0] = lecun * scale;
      auto h = bh::mlp_hessian_closed_form(s.weights, bm::Activation::ReLU, s.x, s.y,
                                           bm::Loss::CrossEntropy);
      auto part = bh::make_partition("per_row", s.infos);
      const double excess =
          bh::off_diagonal_ratios(bh::block_norms(h, part), part).mean * (classes - 1) - 1.0;
      if (scale == 0.0) {
        EXPECT_NEAR(excess, 0.0, 1e-12) << "C = " << classes;
      } else {
        EXPECT_GE(excess, -1e-12) << "C = " << classes << ", scale " << scale;
        // NOTE: rounding in the norms is ~1e-15; any growth above it is the effect itself.
        EXPECT_GT(excess, previous_excess + 1e-12) << "C = " << classes << ", scale " << scale;
      }
      previous_excess = excess;
    }
  }
}

// Theorem 1: C^2 r^2 -> (g e^2 + 1) / (g e + 1) for d/N -> g, then C -> infinity: it grows
// with g. At C = 20, d <= 80 the values sit 9-15% off the limit (1.36, 1.54, 1.93 against
// 1.25, 1.70, 2.26), a finite-d bias that moving to C = 40 does not remove and that is not
// derived here, so the absolute values are not checked. Checked: the predicted growth, each
// step in g by more than 3 standard errors of the 3-seed means (a flat curve fails).
TEST(HessianTheory, TheoremOneTrendInGamma) {
  const int64_t classes = 20;
  std::pair<double, double> previous{0.0, 0.0};
  for (auto [d, n] : {std::pair<int64_t, int64_t>{20, 320}, {40, 160}, {80, 80}}) {
    std::vector<double> values;
    for (uint64_t seed = 0; seed < 3; ++seed) {
      const auto setting = gaussian_setting({d, classes}, n, 10 + seed);
      values.push_back(classes * classes *
                       mean_sq_ratio(setting, bm::Loss::CrossEntropy, kLinearLayer));
    }
    const auto current = mean_and_standard_error(values);
    if (previous.first > 0.0) {
      EXPECT_GT(current.first - previous.first, 3.0 * std::hypot(current.second, previous.second))
          << "g = " << static_cast<double>(d) / static_cast<double>(n);
    }
    previous = current;
  }
}

// Theory 3, MSE: output-layer rows only meet through sum_n h h^T delta_cc', so their
// off-diagonal blocks are exactly zero.
TEST(HessianTheory, OneHiddenLayerMseOutputBlocksAreExactlyZero) {
  auto s = gaussian_setting({10, 6, 8}, 300, 2);
  auto h = bh::mlp_hessian_closed_form(s.weights, bm::Activation::ReLU, s.x, s.y, bm::Loss::MSE);
  auto part = bh::make_partition("per_row", s.infos);
  auto norms = bh::block_norms(h, part);
  for (int64_t i = 0; i < part.size(); ++i) {
    for (int64_t j = 0; j < part.size(); ++j) {
      const bool both_output = part.blocks[i].tensor == kOutputLayer &&
                               part.blocks[j].tensor == kOutputLayer;
      if (i == j || !both_output) continue;
      EXPECT_EQ(norms[i][j].item<double>(), 0.0);
    }
  }
  EXPECT_GT(mean_sq_ratio(s, bm::Loss::MSE, kHiddenLayer), 0.0);  // hidden-layer blocks are not
}

// Theory 3, CE: r^2 ~ C^-1 for hidden-layer blocks and C^-2 for output-layer blocks. Slopes
// of log r^2 from C = 4 to 64, per seed (4 seeds). Checked without tuned constants: each mean
// slope is nearer its predicted exponent than the neighbouring integer ones (hidden in
// (-1.5, -0.5), output below -1.5), and the output slope is steeper than the hidden one by
// more than 3 standard errors of the per-seed differences.
TEST(HessianTheory, OneHiddenLayerCrossEntropyOutputBlocksShrinkFaster) {
  const double log_range = std::log(64.0 / 4.0);
  std::vector<double> hidden_slopes, output_slopes, differences;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    auto small = gaussian_setting({20, 8, 4}, 2000, 20 + seed);
    auto large = gaussian_setting({20, 8, 64}, 2000, 20 + seed);
    const double hidden = std::log(mean_sq_ratio(large, bm::Loss::CrossEntropy, kHiddenLayer) /
                                   mean_sq_ratio(small, bm::Loss::CrossEntropy, kHiddenLayer)) /
                          log_range;
    const double output = std::log(mean_sq_ratio(large, bm::Loss::CrossEntropy, kOutputLayer) /
                                   mean_sq_ratio(small, bm::Loss::CrossEntropy, kOutputLayer)) /
                          log_range;
    hidden_slopes.push_back(hidden);
    output_slopes.push_back(output);
    differences.push_back(output - hidden);
  }
  const double hidden = mean_and_standard_error(hidden_slopes).first;
  const double output = mean_and_standard_error(output_slopes).first;
  const auto [difference, difference_error] = mean_and_standard_error(differences);
  std::printf("slopes of log r^2 vs log C: hidden %.3f, output %.3f\n", hidden, output);
  EXPECT_GT(hidden, -1.5);
  EXPECT_LT(hidden, -0.5);
  EXPECT_LT(output, -1.5);
  EXPECT_LT(difference, -3.0 * difference_error);
}
