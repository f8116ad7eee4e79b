#pragma once
// Confidence intervals for what experiments report over seeds: a mean with its Student-t
// interval, and a least-squares line whose slope carries one.
#include <cstddef>
#include <vector>

namespace blockopt::experiments {

// The two-sided Student-t quantile t_{(1 + level)/2, dof} (Boost.Math).
double student_t_quantile(double dof, double level = 0.95);

// mean +- half_width, the `level` confidence interval of the mean of n values (Student t with
// n - 1 degrees of freedom); half_width is NaN for n < 2 (one seed has no interval).
struct MeanInterval {
  double mean = 0.0;
  double sd = 0.0;  // sample standard deviation (n - 1); 0 for one value
  double half_width = 0.0;
  std::size_t n = 0;
};
MeanInterval mean_interval(const std::vector<double>& values, double level = 0.95);

// y = intercept + slope x by least squares, with the `level` confidence interval of the slope
// (standard error from the residuals, Student t with n - 2 degrees of freedom); half_width is
// NaN for n < 3, and 0 when the points lie on a line.
struct LineFit {
  double slope = 0.0;
  double intercept = 0.0;
  double half_width = 0.0;
  std::size_t n = 0;
};
LineFit fit_line(const std::vector<double>& x, const std::vector<double>& y, double level = 0.95);

// Welch's unequal-variance t-test of mean(a) = mean(b), two-sided:
//   t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b),
//   dof by Welch-Satterthwaite, p = 2 P(T_dof > |t|),
// and the effect size d = (mean_a - mean_b) / sqrt((s_a^2 + s_b^2) / 2) (Cohen's d with the
// average variance, which Welch's test assumes no equality of). Needs n >= 2 on each side;
// two samples without spread give p = 0 when their means differ and p = 1 when they do not.
struct WelchTest {
  double t = 0.0;
  double dof = 0.0;
  double p_value = 1.0;
  double effect_size = 0.0;
};
WelchTest welch_t_test(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace blockopt::experiments
