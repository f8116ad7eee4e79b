#pragma once
// `blockopt report RUN_DIR`: one self-contained HTML page for a single run or a sweep, with no
// network: charts drawn by the inlined uPlot (detail/charts.h), PNGs as data URIs.
#include <blockopt/experiments/run_dir.h>

namespace blockopt::experiments {

// Writes RUN_DIR/report.html and returns its path.
fs::path write_report(const fs::path& run_dir);

}  // namespace blockopt::experiments
