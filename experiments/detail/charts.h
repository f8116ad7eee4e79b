#pragma once
// The report's charts (report.cpp): each is a <div class="chart"> followed by its JSON spec,
// which experiments/report/charts.js draws with uPlot (line charts) or on a canvas (heatmaps)
// once page_scripts() has been included. The spec format is documented in charts.js.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace blockopt::experiments::detail::charts {

// How an axis's ticks and hover values are written: 0.0123, 1.5 ms / 2 min, 535 KiB.
enum class Unit { Plain, Seconds, Bytes };

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::vector<double> lo, hi;  // optional band (same length as x), e.g. min/max over seeds
  bool markers = false;        // points only, no line
};

struct Axis {
  std::string label;
  bool log = false;
  Unit unit = Unit::Plain;
};

struct Axes {
  std::string title;
  Axis x, y;
};

// "" when no series has a point (the caller's section then shows nothing).
std::string line_chart(const Axes& axes, const std::vector<Series>& series);

// A heatmap from the spec a probe wrote next to its PNG (heatmap_spec, heatmap.h).
std::string heatmap(const nlohmann::json& spec);

// The <style> and <script> tags the charts need: uPlot and charts.js, inlined. Once per page,
// at the end of <body>.
std::string page_scripts();

// Text with & < > " escaped, for HTML.
std::string escape(const std::string& text);

}  // namespace blockopt::experiments::detail::charts
