#pragma once
// Shared by the sweep's planner, tuner, runner and comparison.
#include <blockopt/experiments/run_dir.h>
#include <blockopt/experiments/sweep.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace blockopt::experiments::detail {

// The JSON in `path`, or null when the file is missing or does not parse (a run that crashed
// leaves no summary, or half of one).
nlohmann::json read_json_or_null(const fs::path& path);

// The run of `arm` at lr multiplier x its lrs, with `seed`, in `stage` (see SweepRun).
SweepRun make_run(const SweepArm& arm, double multiplier, uint64_t seed, const std::string& stage);

// What the seeds of one optimizer at one lr came to.
struct SeedResults {
  std::vector<double> final_eval;  // completed seeds' final eval loss
  int completed = 0, diverged = 0, failed = 0;  // failed: crashed, or no summary yet
};
// Adds one run's summary.json (null when missing) to `results`.
void add_seed_result(SeedResults& results, const nlohmann::json& summary);

// The multiplier with the lowest mean final eval loss among those whose every seed completed
// (a diverged or crashed seed disqualifies an lr); nothing when none qualifies.
std::optional<double> best_lr_multiplier(const std::map<double, SeedResults>& by_multiplier);

// The runs a tuned sweep's finished runs call for next (sweep.h: SweepTune), appended to
// plan.runs; false when there are none (or the sweep is not tuned). Logs each decision.
bool extend_tuning(SweepPlan& plan, const fs::path& dir);

}  // namespace blockopt::experiments::detail
