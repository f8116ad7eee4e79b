#pragma once
// A sweep: one config expanded into a grid of runs (optimizer x any config values, e.g.
// data.classes, x lr multiplier x seed), each run in its own process and run directory, then
// compared (seed spread, steps and wall time to a target loss, lr sensitivity, memory).
// Expanded in sweep_plan.cpp, run in sweep_runner.cpp, compared in sweep_compare.cpp.
#include <blockopt/experiments/run_dir.h>

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace blockopt::experiments {

struct SweepRun {
  std::string id;               // directory name under <sweep>/runs/
  std::string optimizer_label;  // optimizer entry label (default: its name) + grid values
  double lr_multiplier = 1.0;
  uint64_t seed = 0;
  YAML::Node config;            // the complete config of this run
};

struct SweepPlan {
  std::string name;
  std::vector<SweepRun> runs;
  int parallel = 1;
  double target_loss = 0.0;  // 0 = no target
};

// True when the config has a `sweep:` section.
bool is_sweep(const YAML::Node& config);

// Expands the `sweep:` section; errors name the YAML path and line.
SweepPlan plan_sweep(const YAML::Node& config, const std::string& origin);

struct SweepOutcome {
  fs::path dir;
  int completed = 0, diverged = 0, failed = 0;
  bool wrote_comparison = true;  // a worker: whether it was the one to write comparison.json
};

// Runs every run not yet complete (a re-run resumes the sweep), `plan.parallel` processes at
// a time, by executing `blockopt_exe run <dir>/config.yaml --out <dir>` (with `--nproc N`
// when nproc > 1: each run is then N data-parallel ranks). Crashed and diverged runs are
// recorded as such in sweep.json, never dropped. Then writes comparison.json.
SweepOutcome run_sweep(const SweepPlan& plan, const fs::path& dir, const std::string& blockopt_exe,
                       int nproc = 1);

// `blockopt run SWEEP --worker`: one of any number of workers, on one machine or many sharing
// `dir`, that take the runs without a summary one at a time. A worker claims a run by creating
// <run>/claim exclusively and renews its lease (the file's modification time) every
// lease_s / 3 while the run goes on; a claim whose lease ran out (its worker died) is taken
// over, and `blockopt run` resumes the run from its checkpoint. A run ends with a summary
// (a crash gets a failed one) and is never started again. When no run is left, the first
// worker to see it writes comparison.json (once: an exclusive comparison.claim).
SweepOutcome run_sweep_worker(const SweepPlan& plan, const fs::path& dir,
                              const std::string& blockopt_exe, int nproc, double lease_s);

// Aggregates the finished runs of a sweep directory into comparison.json (also used by
// `blockopt report`).
nlohmann::json compare_sweep(const fs::path& dir);

}  // namespace blockopt::experiments
