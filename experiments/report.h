#pragma once
// `blockopt report RUN_DIR`: one self-contained HTML page (charts drawn by the inlined uPlot,
// detail/charts.h; PNGs as data URIs;
// no network) for a single run or a sweep.
#include <blockopt/experiments/run_dir.h>

namespace blockopt::experiments {

// Writes RUN_DIR/report.html and returns its path.
fs::path write_report(const fs::path& run_dir);

}  // namespace blockopt::experiments
