#include <blockopt/experiments/detail/heatmap.h>

#include <cmath>
#include <stdexcept>

namespace blockopt::experiments::detail {

nlohmann::json heatmap_spec(const torch::Tensor& matrix, const std::vector<TensorRange>& tensors,
                            const std::string& title, const std::string& label,
                            int64_t max_cells) {
  if (matrix.dim() != 2 || matrix.size(0) != matrix.size(1)) {
    throw std::invalid_argument("heatmap_spec: needs a square matrix");
  }
  const int64_t size = matrix.size(0);
  const int64_t cell = (size + max_cells - 1) / max_cells;
  auto pooled = matrix.detach().to(torch::kDouble).abs();  // (size, size)
  if (cell > 1) {  // keep peaks visible: max over each cell x cell square
    pooled = torch::max_pool2d(pooled.unsqueeze(0), {cell, cell}, {cell, cell}, {0, 0}, {1, 1},
                               /*ceil_mode=*/true)
                 .squeeze(0);  // (rows, cols)
  }
  const auto grid = pooled.contiguous();
  const double* v = grid.data_ptr<double>();
  const double top = grid.numel() ? grid.max().item<double>() : 0.0;
  const double max = top > 0.0 ? std::log10(top) : 0.0;
  auto values = nlohmann::json::array();
  for (int64_t i = 0; i < grid.numel(); ++i) {
    values.push_back(v[i] > 0.0 ? nlohmann::json(std::round(std::log10(v[i]) * 1e3) / 1e3)
                                : nlohmann::json());
  }
  auto ranges = nlohmann::json::array();
  for (const auto& t : tensors) ranges.push_back({{"name", t.name}, {"begin", t.begin}, {"end", t.end}});
  return {{"title", title},  {"label", label},   {"rows", grid.size(0)}, {"cols", grid.size(1)},
          {"cell", cell},    {"size", size},     {"values", values},     {"min", max - 6.0},
          {"max", max},      {"tensors", ranges}};
}

}  // namespace blockopt::experiments::detail
