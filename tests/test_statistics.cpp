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
  EXPECT_DOUBLE_EQ(m.sd, 1.0);
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

// Wikipedia's "Welch's t-test" example 1 (t = -2.46, dof = 25.0, p = 0.021 as printed); the
// digits below are from python: the formulas in plain floats, p = 1 - 2 * Simpson's integral of
// the t density over [0, |t|] with 2e5 intervals.
TEST(Statistics, WelchTestMatchesAnIndependentIntegral) {
  const std::vector<double> a = {27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1,
                                 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4};
  const std::vector<double> b = {27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0,
                                 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4};
  const auto w = ex::welch_t_test(a, b);
  EXPECT_NEAR(w.t, -2.45535639828601, 1e-12);
  EXPECT_NEAR(w.dof, 24.98852929023142, 1e-10);
  EXPECT_NEAR(w.p_value, 0.021378001462862062, 1e-9);
  EXPECT_NEAR(w.effect_size, -0.8965693907039245, 1e-12);
  // Swapping the samples flips the sign of t and d, not the p-value.
  const auto swapped = ex::welch_t_test(b, a);
  EXPECT_DOUBLE_EQ(swapped.t, -w.t);
  EXPECT_DOUBLE_EQ(swapped.p_value, w.p_value);
}

TEST(Statistics, WelchTestWithoutSpreadOrSeeds) {
  EXPECT_EQ(ex::welch_t_test({1.0, 1.0}, {1.0, 1.0}).p_value, 1.0);
  EXPECT_EQ(ex::welch_t_test({1.0, 1.0}, {2.0, 2.0}).p_value, 0.0);
  EXPECT_NE(blockopt::test::error_of([] { ex::welch_t_test({1.0}, {1.0, 2.0}); })
                .find("two or more values on each side, got 1 and 2"),
            std::string::npos);
}
