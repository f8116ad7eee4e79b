#include <blockopt/experiments/statistics.h>

#include <boost/math/distributions/students_t.hpp>

#include <cmath>
#include <stdexcept>
#include <string>

namespace blockopt::experiments {

namespace {

// Sample mean and variance (n - 1 in the denominator).
std::pair<double, double> mean_and_variance(const std::vector<double>& values) {
  const double n = static_cast<double>(values.size());
  double mean = 0.0;
  for (double v : values) mean += v / n;
  double sum_sq = 0.0;
  for (double v : values) sum_sq += (v - mean) * (v - mean);
  return {mean, sum_sq / (n - 1)};
}

}  // namespace

double student_t_quantile(double dof, double level) {
  if (!(dof > 0) || !(level > 0 && level < 1)) {
    throw std::invalid_argument("student_t_quantile: needs dof > 0 and 0 < level < 1, got dof " +
                                std::to_string(dof) + ", level " + std::to_string(level));
  }
  return boost::math::quantile(boost::math::students_t(dof), 0.5 + level / 2.0);
}

MeanInterval mean_interval(const std::vector<double>& values, double level) {
  MeanInterval out;
  out.n = values.size();
  if (values.empty()) throw std::invalid_argument("mean_interval: no values");
  for (double v : values) out.mean += v / static_cast<double>(out.n);
  if (out.n < 2) {
    out.half_width = std::nan("");
    return out;
  }
  out.sd = std::sqrt(mean_and_variance(values).second);
  out.half_width = student_t_quantile(static_cast<double>(out.n - 1), level) * out.sd /
                   std::sqrt(static_cast<double>(out.n));
  return out;
}


WelchTest welch_t_test(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() < 2 || b.size() < 2) {
    throw std::invalid_argument("welch_t_test: needs two or more values on each side, got " +
                                std::to_string(a.size()) + " and " + std::to_string(b.size()));
  }
  const auto [mean_a, var_a] = mean_and_variance(a);
  const auto [mean_b, var_b] = mean_and_variance(b);
  const double se_a = var_a / static_cast<double>(a.size());
  const double se_b = var_b / static_cast<double>(b.size());
  WelchTest out;
  const double difference = mean_a - mean_b;
  if (se_a + se_b == 0.0) {  // no spread on either side: the means are equal or they are not
    out.p_value = difference == 0.0 ? 1.0 : 0.0;
    out.t = difference == 0.0 ? 0.0 : std::copysign(INFINITY, difference);
    out.effect_size = out.t;
    out.dof = static_cast<double>(a.size() + b.size() - 2);
    return out;
  }
  out.t = difference / std::sqrt(se_a + se_b);
  out.dof = (se_a + se_b) * (se_a + se_b) /
            (se_a * se_a / static_cast<double>(a.size() - 1) +
             se_b * se_b / static_cast<double>(b.size() - 1));
  out.p_value = 2.0 * boost::math::cdf(boost::math::complement(boost::math::students_t(out.dof),
                                                               std::fabs(out.t)));
  out.effect_size = difference / std::sqrt((var_a + var_b) / 2.0);
  return out;
}

LineFit fit_line(const std::vector<double>& x, const std::vector<double>& y, double level) {
  if (x.size() != y.size() || x.size() < 2) {
    throw std::invalid_argument("fit_line: needs two or more (x, y) pairs, got " +
                                std::to_string(x.size()) + " x and " + std::to_string(y.size()) +
                                " y");
  }
  LineFit out;
  out.n = x.size();
  const double n = static_cast<double>(out.n);
  double mx = 0, my = 0;
  for (size_t i = 0; i < out.n; ++i) {
    mx += x[i] / n;
    my += y[i] / n;
  }
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < out.n; ++i) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxy += (x[i] - mx) * (y[i] - my);
  }
  if (sxx == 0) throw std::invalid_argument("fit_line: every x is the same");
  out.slope = sxy / sxx;
  out.intercept = my - out.slope * mx;
  if (out.n < 3) {
    out.half_width = std::nan("");
    return out;
  }
  double residual_sq = 0;
  for (size_t i = 0; i < out.n; ++i) {
    const double r = y[i] - out.intercept - out.slope * x[i];
    residual_sq += r * r;
  }
  // Var(slope) = s^2 / Sxx with s^2 = residual sum of squares / (n - 2).
  const double standard_error = std::sqrt(residual_sq / (n - 2) / sxx);
  out.half_width = student_t_quantile(n - 2, level) * standard_error;
  return out;
}

}  // namespace blockopt::experiments
