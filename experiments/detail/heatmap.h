#pragma once
// The data of an interactive heatmap (report.cpp draws it with detail/charts.h): a matrix
// max-pooled to at most max_cells per side, as log10 |value|, with the ranges of the parameter
// tensors along its axes.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::experiments::detail {

// Indices [begin, end) of one parameter tensor along a heatmap's axes.
struct TensorRange {
  std::string name;
  int64_t begin = 0, end = 0;
};

// A (size, size) matrix -> {title, label, rows, cols, cell, size, values, min, max, tensors}:
// values holds (rows, cols) row-major log10 of the largest |entry| of each cell x cell square
// (null for 0), rounded to 3 decimals; [min, max] spans the six decades below the largest.
nlohmann::json heatmap_spec(const torch::Tensor& matrix, const std::vector<TensorRange>& tensors,
                            const std::string& title, const std::string& label,
                            int64_t max_cells = 128);

}  // namespace blockopt::experiments::detail
