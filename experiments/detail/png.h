#pragma once
// PNG images of the probe's outputs: heatmaps of block-norm and Hessian matrices, and
// spectrum histograms with a fitted density.
#include <torch/torch.h>

#include <filesystem>
#include <utility>

namespace blockopt::experiments::detail {

// Heatmap PNG of a matrix (downsampled by max-pooling to at most max_side pixels) with a
// colour bar on the right; `log_scale` maps log10 of the values. Returns the [lo, hi] range.
std::pair<double, double> write_heatmap_png(const std::filesystem::path& path,
                                            const torch::Tensor& matrix, bool log_scale,
                                            int64_t max_side = 800);

// Histogram PNG: grey bars of `counts` (bins) under a red curve through `density` (bins),
// both float64 on the same scale.
void write_histogram_png(const std::filesystem::path& path, const torch::Tensor& counts,
                         const torch::Tensor& density);

}  // namespace blockopt::experiments::detail
