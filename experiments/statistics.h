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

}  // namespace blockopt::experiments
