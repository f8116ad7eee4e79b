#pragma once
// Shared by the sweep's runner and its comparison.
#include <blockopt/experiments/run_dir.h>

namespace blockopt::experiments::detail {

// The JSON in `path`, or null when the file is missing or does not parse (a run that crashed
// leaves no summary, or half of one).
nlohmann::json read_json_or_null(const fs::path& path);

}  // namespace blockopt::experiments::detail
