#include <blockopt/experiments/detail/png.h>
#include <blockopt/experiments/run_dir.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

namespace blockopt::experiments::detail {

namespace {

// Viridis, 5 stops, linearly interpolated; u in [0, 1].
std::array<uint8_t, 3> colour(double u) {
  static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140},
                                     {94, 201, 98}, {253, 231, 37}};
  u = std::clamp(u, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(u));
  const double f = u - i;
  std::array<uint8_t, 3> rgb{};
  for (int c = 0; c < 3; ++c) {
    rgb[c] = static_cast<uint8_t>(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
  }
  return rgb;
}

struct Image {
  int width, height;
  std::vector<uint8_t> rgb;
  Image(int w, int h) : width(w), height(h), rgb(static_cast<size_t>(w) * h * 3, 255) {}
  void set(int x, int y, std::array<uint8_t, 3> c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    std::copy(c.begin(), c.end(), rgb.begin() + (static_cast<size_t>(y) * width + x) * 3);
  }
  void save(const std::filesystem::path& path) const {
    std::string bytes;
    stbi_write_png_to_func(
        [](void* context, void* data, int size) {
          static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
        },
        &bytes, width, height, 3, rgb.data(), width * 3);
    write_file_atomic(path, bytes);
  }
};

}  // namespace

std::pair<double, double> write_heatmap_png(const std::filesystem::path& path,
                                            const torch::Tensor& matrix, bool log_scale,
                                            int64_t max_side) {
  auto m = matrix.detach().to(torch::kDouble).abs();
  const int64_t rows = m.size(0), cols = m.size(1);
  if (rows > max_side || cols > max_side) {  // keep peaks visible: max-pool
    m = std::get<0>(torch::adaptive_max_pool2d(
                        m.unsqueeze(0).unsqueeze(0),
                        {std::min(rows, max_side), std::min(cols, max_side)}))
            .squeeze(0)
            .squeeze(0);
  }
  const double hi_raw = m.max().item<double>();
  double lo, hi;
  torch::Tensor u;  // (R, C) in [0, 1]
  if (log_scale) {
    hi = std::log10(std::max(hi_raw, 1e-300));
    lo = hi - 6.0;  // six decades
    u = (torch::log10(m.clamp_min(1e-300)) - lo) / (hi - lo);
  } else {
    lo = 0.0;
    hi = hi_raw;
    u = m / std::max(hi, 1e-300);
  }
  const int64_t r = u.size(0), c = u.size(1);
  const int cell = static_cast<int>(std::max<int64_t>(1, 400 / std::max(r, c)));
  const int bar_gap = 10, bar_width = 20;
  Image img(static_cast<int>(c) * cell + bar_gap + bar_width, static_cast<int>(r) * cell);
  auto acc = u.accessor<double, 2>();
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j < c; ++j) {
      const auto rgb = colour(acc[i][j]);
      for (int dy = 0; dy < cell; ++dy) {
        for (int dx = 0; dx < cell; ++dx) img.set(j * cell + dx, i * cell + dy, rgb);
      }
    }
  }
  // Colour bar: top = hi, bottom = lo (range logged next to the image in probes.jsonl).
  for (int y = 0; y < img.height; ++y) {
    const auto rgb = colour(1.0 - static_cast<double>(y) / std::max(1, img.height - 1));
    for (int x = 0; x < bar_width; ++x) img.set(static_cast<int>(c) * cell + bar_gap + x, y, rgb);
  }
  img.save(path);
  return {lo, hi};
}

void write_histogram_png(const std::filesystem::path& path, const torch::Tensor& counts,
                         const torch::Tensor& density) {
  const int width = 600, height = 300;
  Image img(width, height);
  const int64_t bins = counts.size(0);
  const double top = std::max(counts.max().item<double>(), density.max().item<double>());
  const int bar = width / static_cast<int>(bins);
  auto count = counts.accessor<double, 1>();
  auto curve = density.accessor<double, 1>();
  for (int64_t i = 0; i < bins; ++i) {
    const int h = static_cast<int>(count[i] / std::max(top, 1e-300) * (height - 10));
    for (int y = height - h; y < height; ++y) {
      for (int x = 0; x + 1 < bar; ++x) img.set(static_cast<int>(i) * bar + x, y, {120, 120, 120});
    }
  }
  for (int64_t i = 0; i + 1 < bins; ++i) {  // the fitted density in red
    const double y0 = curve[i] / std::max(top, 1e-300) * (height - 10);
    const double y1 = curve[i + 1] / std::max(top, 1e-300) * (height - 10);
    for (int x = 0; x < bar; ++x) {
      const double y = y0 + (y1 - y0) * x / bar;
      for (int t = -1; t <= 1; ++t) {
        img.set(static_cast<int>(i) * bar + bar / 2 + x, height - 1 - static_cast<int>(y) + t,
                {220, 30, 30});
      }
    }
  }
  img.save(path);
}

}  // namespace blockopt::experiments::detail
