#pragma once
// The report's script and style files, compiled in by cmake/embed_text.cmake (CMakeLists.txt):
// uPlot's pinned release (cmake/uplot.cmake) and experiments/report/charts.js.
#include <string_view>

namespace blockopt::experiments::detail::assets {

std::string_view uplot_js();
std::string_view uplot_css();
std::string_view uplot_license();
std::string_view charts_js();

}  // namespace blockopt::experiments::detail::assets
