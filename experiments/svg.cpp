#include <blockopt/experiments/detail/svg.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace blockopt::experiments::detail::svg {

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

constexpr double kWidth = 640, kHeight = 360, kLeft = 70, kRight = 150, kTop = 30, kBottom = 50;

// Maps data coordinates to pixels on one axis (optionally logarithmic).
struct Scale {
  double lo, hi, pixel_lo, pixel_hi;
  bool log;
  double operator()(double v) const {
    const double a = log ? std::log10(lo) : lo, b = log ? std::log10(hi) : hi;
    const double t = ((log ? std::log10(v) : v) - a) / (b - a);
    return pixel_lo + t * (pixel_hi - pixel_lo);
  }
};

std::string tick_label(double v) { return fmt::format("{:.3g}", v); }

std::string frame(const Axes& axes, const Scale& sx, const Scale& sy) {
  std::string out = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">)",
      kWidth, kHeight);
  out += fmt::format(R"(<text x="{}" y="18" font-size="13" text-anchor="middle">{}</text>)",
                     (kLeft + kWidth - kRight) / 2, escape(axes.title));
  out += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>)", kLeft,
                     kTop, kWidth - kLeft - kRight, kHeight - kTop - kBottom);
  for (int i = 0; i <= 4; ++i) {
    auto tick = [&](const Scale& s) {
      if (!s.log) return s.lo + (s.hi - s.lo) * i / 4.0;
      return std::pow(10.0, std::log10(s.lo) + (std::log10(s.hi) - std::log10(s.lo)) * i / 4.0);
    };
    const double xv = tick(sx), yv = tick(sy);
    out += fmt::format(R"(<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>)", sx(xv),
                       kHeight - kBottom + 15, tick_label(xv));
    out += fmt::format(R"(<text x="{}" y="{:.1f}" text-anchor="end">{}</text>)", kLeft - 4, sy(yv) + 4,
                       tick_label(yv));
    out += fmt::format(R"(<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="#eee"/>)", kLeft,
                       kWidth - kRight, sy(yv), sy(yv));
  }
  out += fmt::format(R"(<text x="{}" y="{}" text-anchor="middle">{}</text>)", (kLeft + kWidth - kRight) / 2,
                     kHeight - 12, escape(axes.xlabel));
  out += fmt::format(R"svg(<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>)svg",
                     kHeight / 2, kHeight / 2, escape(axes.ylabel));
  return out;
}

}  // namespace

const char* colour(size_t i) {
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                  "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
  return palette[i % 10];
}

std::string line_plot(const Axes& axes, const std::vector<Series>& series) {
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  auto usable = [](double v, bool log) { return std::isfinite(v) && (!log || v > 0); };
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], axes.log_x) || !usable(s.y[i], axes.log_y)) continue;
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      const double lo = s.lo.empty() ? s.y[i] : s.lo[i], hi = s.hi.empty() ? s.y[i] : s.hi[i];
      if (usable(lo, axes.log_y)) y_lo = std::min(y_lo, lo);
      if (usable(hi, axes.log_y)) y_hi = std::max(y_hi, hi);
    }
  }
  if (!std::isfinite(x_lo)) return "<p>(no data to plot for " + escape(axes.title) + ")</p>";
  // A single value: widen the axis around it (by a factor 2 on a log axis).
  auto widen = [](double& lo, double& hi, bool log) {
    if (hi != lo) return;
    if (log) lo /= 2, hi *= 2;
    else lo -= 1, hi += 1;
  };
  widen(x_lo, x_hi, axes.log_x);
  widen(y_lo, y_hi, axes.log_y);
  const Scale sx{x_lo, x_hi, kLeft, kWidth - kRight, axes.log_x};
  const Scale sy{y_lo, y_hi, kHeight - kBottom, kTop, axes.log_y};
  std::string out = frame(axes, sx, sy);
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    std::string band_upper, band_lower, line;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], axes.log_x) || !usable(s.y[i], axes.log_y)) continue;
      line += fmt::format("{:.1f},{:.1f} ", sx(s.x[i]), sy(s.y[i]));
      if (!s.lo.empty() && usable(s.lo[i], axes.log_y) && usable(s.hi[i], axes.log_y)) {
        band_upper += fmt::format("{:.1f},{:.1f} ", sx(s.x[i]), sy(s.hi[i]));
        band_lower = fmt::format("{:.1f},{:.1f} ", sx(s.x[i]), sy(s.lo[i])) + band_lower;
      }
      if (s.markers) {
        out += fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)", sx(s.x[i]), sy(s.y[i]),
                           colour(k));
      }
    }
    if (!band_upper.empty()) {
      out += fmt::format(R"(<polygon points="{}{}" fill="{}" fill-opacity="0.18" stroke="none"/>)",
                         band_upper, band_lower, colour(k));
    }
    out += fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="1.6"/>)", line,
                       colour(k));
    out += fmt::format(R"(<rect x="{}" y="{}" width="12" height="3" fill="{}"/><text x="{}" y="{}">{}</text>)",
                       kWidth - kRight + 10, kTop + 14 * k + 4, colour(k), kWidth - kRight + 26,
                       kTop + 14 * k + 8, escape(s.name));
  }
  return out + "</svg>";
}

std::string bar_plot(const Axes& axes, const std::vector<std::string>& labels,
                     const std::vector<double>& values) {
  double hi = 0.0;
  for (double v : values) hi = std::isfinite(v) ? std::max(hi, v) : hi;
  if (hi <= 0.0) return "<p>(no data to plot for " + escape(axes.title) + ")</p>";
  const Scale sx{0, static_cast<double>(labels.size()), kLeft, kWidth - kRight, false};
  const Scale sy{0, hi * 1.1, kHeight - kBottom, kTop, false};
  std::string out = frame(Axes{axes.title, "", axes.ylabel, false, false}, sx, sy);
  for (size_t i = 0; i < labels.size(); ++i) {
    const double x0 = sx(i + 0.15), x1 = sx(i + 0.85);
    if (std::isfinite(values[i])) {
      out += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}"/>)", x0,
                         sy(values[i]), x1 - x0, sy(0) - sy(values[i]), colour(i));
    }
    out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" text-anchor="middle" font-size="10">{}</text>)",
                       (x0 + x1) / 2, sy(0) - 4, escape(labels[i]));
  }
  return out + "</svg>";
}

}  // namespace blockopt::experiments::detail::svg
