#pragma once
// The Marchenko-Pastur law fitted to a spectrum, for the full_hessian probe's histograms.
#include <torch/torch.h>

namespace blockopt::experiments::detail {

// Marchenko-Pastur law fitted by moments (mean = sigma^2, variance = q sigma^4) to a set of
// eigenvalues, with the histogram and the fitted density at the bin centres.
struct MarchenkoPasturFit {
  double sigma2 = 0.0;
  double ratio = 0.0;  // q
  torch::Tensor edges, counts, density;  // (bins + 1), (bins), (bins) fitted pdf x count scale
};
MarchenkoPasturFit fit_marchenko_pastur(const torch::Tensor& eigenvalues, int64_t bins = 60);

}  // namespace blockopt::experiments::detail
