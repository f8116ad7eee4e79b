// row_heterogeneity: how much the neurons (rows) of each weight matrix differ in curvature, the
// seed's case for normalising per row (NorMuon, Aurora) where Muon applies one preconditioner
// to the whole matrix. For `rows` rows r of every matrix, evenly spaced among the rows the
// evaluation data reach (a non-zero gradient; an unused token's embedding row has H_rr = 0 and
// no spectrum to compare; a matrix with fewer than 2 such rows is skipped), SLQ of the row's
// diagonal block H_rr (an operator through restrict_to) gives its top eigenvalue (the largest
// Ritz value), its trace (width x the quadrature's mean: Hutchinson with the SLQ start vectors)
// and its spectral density. Per matrix the record holds the spread of the tops and traces
// (coefficient of variation over the rows; max / min where all are positive) and the mean and
// largest Jensen-Shannon distance between the rows' densities; the means over matrices are
// the scalars the report plots over training.
#include <blockopt/experiments/detail/probe.h>
#include <blockopt/experiments/statistics.h>
#include <blockopt/hessian/estimators.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace blockopt::experiments::detail {

namespace {

// {"cv": sd / |mean| over the values, "max_over_min": max / min, null unless all are > 0}.
nlohmann::json spread(const std::vector<double>& values) {
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  const double m = mean_interval(values).mean;
  double sum_sq = 0;
  for (double v : values) sum_sq += (v - m) * (v - m);
  const double sd = std::sqrt(sum_sq / static_cast<double>(values.size() - 1));
  return {{"cv", m != 0.0 ? sd / std::abs(m) : std::nan("")},
          {"max_over_min", *lo > 0 ? nlohmann::json(*hi / *lo) : nlohmann::json()}};
}

}  // namespace

void run_row_heterogeneity(ProbeContext& probe) {
  namespace bh = blockopt::hessian;
  const auto& spec = probe.spec;
  const auto& options = probe.target.options;
  const auto matvec = bh::as_matvec(probe.op);
  const auto gradient = probe.op.gradient();  // (P)
  nlohmann::json matrices = nlohmann::json::array(), skipped = nlohmann::json::array();
  std::vector<double> top_cvs, trace_cvs, js_means;
  int64_t tensor_begin = 0;
  for (size_t t = 0; t < probe.target.infos.size(); ++t) {
    const auto& info = probe.target.infos[t];
    const int64_t numel = info.numel(), begin = tensor_begin;
    tensor_begin += numel;
    if (info.shape.size() < 2 || info.shape[0] < 2 || numel == 0) continue;  // a matrix's rows only
    const int64_t rows = info.shape[0], width = numel / rows;
    const auto reached = rows_reached(gradient, begin, rows, width);
    const int64_t candidates = reached.size(0);
    if (candidates < 2) {
      skipped.push_back(info.name);
      continue;
    }
    const int64_t picked = std::min(spec.rows, candidates);
    const int64_t steps = std::min(spec.lanczos_steps, width);
    std::vector<int64_t> indices;
    std::vector<double> tops, traces;
    std::vector<bh::SpectralDensity> densities;
    for (int64_t k = 0; k < picked; ++k) {
      const int64_t r = reached[k * candidates / picked].item<int64_t>();  // evenly spaced
      const bh::Block row{begin + r * width, begin + (r + 1) * width, static_cast<int64_t>(t), ""};
      auto density = bh::slq_density(bh::restrict_to(matvec, row, probe.parameter_count, options),
                                     width, steps, spec.samples, probe.generator, options);
      indices.push_back(r);
      tops.push_back(density.nodes.max().item<double>());
      traces.push_back(static_cast<double>(width) *
                       (density.nodes * density.weights).sum().item<double>());
      densities.push_back(std::move(density));
    }
    // Smoothing width: 1% of the rows' joint spectral range (as the slq probe).
    double lo = densities.front().nodes.min().item<double>(), hi = tops.front();
    for (size_t i = 0; i < densities.size(); ++i) {
      lo = std::min(lo, densities[i].nodes.min().item<double>());
      hi = std::max(hi, tops[i]);
    }
    const double sigma = std::max(0.01 * (hi - lo), 1e-12);
    std::vector<double> js;
    for (size_t i = 0; i < densities.size(); ++i) {
      for (size_t j = i + 1; j < densities.size(); ++j) {
        js.push_back(bh::js_distance(densities[i], densities[j], sigma));
      }
    }
    const auto top_spread = spread(tops), trace_spread = spread(traces);
    const double js_mean = mean_interval(js).mean;
    matrices.push_back({{"name", info.name}, {"rows", indices}, {"top_eigenvalues", tops},
                        {"traces", traces}, {"top_cv", top_spread["cv"]},
                        {"top_max_over_min", top_spread["max_over_min"]},
                        {"trace_cv", trace_spread["cv"]},
                        {"trace_max_over_min", trace_spread["max_over_min"]},
                        {"js_mean", js_mean},
                        {"js_max", *std::max_element(js.begin(), js.end())},
                        {"smoothing_sigma", sigma}});
    top_cvs.push_back(top_spread["cv"].get<double>());
    trace_cvs.push_back(trace_spread["cv"].get<double>());
    js_means.push_back(js_mean);
  }
  if (matrices.empty()) {
    throw std::invalid_argument("row_heterogeneity probe: no weight matrix has 2 or more rows that "
                                "the evaluation data reach");
  }
  probe.record["matrices"] = matrices;
  probe.record["skipped_matrices"] = skipped;
  probe.record["top_cv_mean"] = mean_interval(top_cvs).mean;
  probe.record["trace_cv_mean"] = mean_interval(trace_cvs).mean;
  probe.record["js_mean"] = mean_interval(js_means).mean;
}

}  // namespace blockopt::experiments::detail
