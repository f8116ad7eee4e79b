#include <blockopt/experiments/detail/marchenko_pastur.h>

#include <algorithm>
#include <cmath>

namespace blockopt::experiments::detail {

MarchenkoPasturFit fit_marchenko_pastur(const torch::Tensor& eigenvalues, int64_t bins) {
  auto e = eigenvalues.detach().to(torch::kDouble).flatten();
  MarchenkoPasturFit fit;
  const double mean = e.mean().item<double>();
  const double var = e.numel() > 1 ? e.var().item<double>() : 0.0;
  fit.sigma2 = mean;
  fit.ratio = mean > 0 ? var / (mean * mean) : 0.0;
  const double lo = e.min().item<double>(), hi = e.max().item<double>();
  const double width = std::max(hi - lo, 1e-300) / static_cast<double>(bins);
  fit.edges = torch::linspace(lo, lo + width * bins, bins + 1, torch::kDouble);
  fit.counts = torch::histc(e, bins, lo, lo + width * bins);
  auto centres = (fit.edges.slice(0, 0, bins) + fit.edges.slice(0, 1)) / 2;
  fit.density = torch::zeros({bins}, torch::kDouble);
  if (fit.sigma2 > 0 && fit.ratio > 0) {
    // MP pdf sqrt((b - x)(x - a)) / (2 pi sigma^2 q x) on [a, b], scaled to counts.
    const double sq = std::sqrt(fit.ratio);
    const double a = fit.sigma2 * (1 - sq) * (1 - sq), b = fit.sigma2 * (1 + sq) * (1 + sq);
    auto inside = (b - centres).clamp_min(0) * (centres - a).clamp_min(0);
    fit.density = inside.sqrt() / (2 * M_PI * fit.sigma2 * fit.ratio * centres.clamp_min(1e-300)) *
                  (static_cast<double>(e.numel()) * width);
    fit.density.masked_fill_(centres.le(0), 0.0);
  }
  return fit;
}

}  // namespace blockopt::experiments::detail
