// experiments/statistics.h against values computed independently: Student-t quantiles in closed
// form (1 and 2 dof: tan(pi (p - 1/2)), (2p - 1) sqrt(2 / (4p(1-p)))) or by bisection on a
// Simpson integral of the density (python, 2e5 intervals), and hand-worked fits.
#include <blockopt/experiments/statistics.h>

#include "common.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ex = blockopt::experiments;

TEST(Statistics, StudentTQuantilesMatchTables) {
  EXPECT_NEAR(ex::student_t_quantile(1), 12.706204736174696, 1e-10);
  EXPECT_NEAR(ex::student_t_quantile(2), 4.302652729749461, 1e-10);
  EXPECT_NEAR(ex::student_t_quantile(10), 2.2281388519861753, 1e-9);
  EXPECT_NEAR(ex::student_t_quantile(4.5), 2.6589123472043377, 1e-9);  // non-integer (Welch) dof
  EXPECT_NEAR(ex::student_t_quantile(1e6), 1.959966, 1e-5);  // -> the normal quantile
  EXPECT_NE(blockopt::test::error_of([] { ex::student_t_quantile(0); }).find("dof > 0"),
            std::string::npos);
}

TEST(Statistics, MeanIntervalOfThreeSeeds) {
  const auto m = ex::mean_interval({1.0, 2.0, 3.0});  // sd 1
  EXPECT_DOUBLE_EQ(m.mean, 2.0);
  EXPECT_NEAR(m.half_width, 4.302652729749461 / std::sqrt(3.0), 1e-12);
  EXPECT_EQ(m.n, 3u);
  EXPECT_TRUE(std::isnan(ex::mean_interval({5.0}).half_width));  // one seed: no interval
}

TEST(Statistics, LineFitSlopeInterval) {
  const auto exact = ex::fit_line({0, 1, 2, 3}, {1, 3, 5, 7});
  EXPECT_DOUBLE_EQ(exact.slope, 2.0);
  EXPECT_DOUBLE_EQ(exact.intercept, 1.0);
  EXPECT_DOUBLE_EQ(exact.half_width, 0.0);
  // y = x + (1, -1, -1, 1): the noise is orthogonal to 1 and x, so slope 1, intercept 0,
  // residual sum of squares 4, s^2 = 4 / (n - 2) = 2, Sxx = 5, SE = sqrt(2 / 5).
  const auto noisy = ex::fit_line({0, 1, 2, 3}, {1, 0, 1, 4});
  EXPECT_NEAR(noisy.slope, 1.0, 1e-12);
  EXPECT_NEAR(noisy.half_width, 4.302652729749461 * std::sqrt(2.0 / 5.0), 1e-12);
  EXPECT_NE(blockopt::test::error_of([] { ex::fit_line({1, 1, 1}, {1, 2, 3}); }).find("every x is the same"),
            std::string::npos);
}
