#pragma once
// Inline SVG plots for the HTML report (report.cpp).
// NOTE: hand-written: the report must be one self-contained file with no network, and no
// Debian C++ package renders SVG charts.
#include <string>
#include <vector>

namespace blockopt::experiments::detail::svg {

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::vector<double> lo, hi;  // optional band (same length as x), e.g. min/max over seeds
  bool markers = false;
};

struct Axes {
  std::string title, xlabel, ylabel;
  bool log_x = false, log_y = false;
};

std::string line_plot(const Axes& axes, const std::vector<Series>& series);
std::string bar_plot(const Axes& axes, const std::vector<std::string>& labels,
                     const std::vector<double>& values);

// Text with & < > " escaped, for SVG and HTML.
std::string escape(const std::string& text);

// Colour i of a fixed qualitative palette.
const char* colour(size_t i);

}  // namespace blockopt::experiments::detail::svg
