#pragma once
// A sweep: one config expanded into a grid of runs (optimizer x any config values, e.g.
// data.classes, x lr multiplier x seed), each run in its own process and run directory, then
// compared (seed spread, steps and wall time to a target loss, lr sensitivity, memory,
// significance tests). A tuned sweep (`sweep.tune`) grows its lr grid until each optimizer's
// best lr is interior, then reruns the best lr with fresh seeds.
// Expanded in sweep_plan.cpp, tuned in sweep_tune.cpp, run in sweep_runner.cpp, compared in
// sweep_compare.cpp.
#include <blockopt/experiments/run_dir.h>

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

namespace blockopt::experiments {

struct SweepRun {
  std::string id;               // directory name under <sweep>/runs/
  std::string optimizer_label;  // optimizer entry label (default: its name) + grid values
  std::string entry_label;      // the optimizer entry label alone
  std::string workload;         // the grid values alone, e.g. "classes=10" ("" without a grid)
  std::string stage;            // "" in a plain sweep; "tune" or "final" in a tuned one
  double lr_multiplier = 1.0;
  uint64_t seed = 0;
  YAML::Node config;            // the complete config of this run
};

// One optimizer entry at one grid setting: what runs at every lr multiplier and seed.
struct SweepArm {
  std::string label, entry_label, workload;  // as in SweepRun
  YAML::Node config;  // the run config before its lr multiplier, seed and name are applied
};

// sweep.tune: every optimizer is tuned on lr = 2^k x its lr, k = lr_log2_low..lr_log2_high
// (its fallback lr moves with it, at the config's fixed ratio), over the sweep's seeds. While
// the best k (lowest mean final eval loss, every seed completed) is the lowest or highest k
// tried, the next k outward is added, up to [bound_low, bound_high]. Then final_seeds run at
// the best k; the comparison's statistics are theirs.
struct SweepTune {
  int lr_log2_low = -3, lr_log2_high = 3;
  int bound_low = -6, bound_high = 6;
  std::vector<uint64_t> tuning_seeds;  // sweep.seeds
  std::vector<uint64_t> final_seeds;   // disjoint from the tuning seeds
};

struct SweepPlan {
  std::string name;
  std::vector<SweepArm> arms;
  std::vector<SweepRun> runs;  // a tuned sweep's grow as its stages end
  int parallel = 1;
  double target_loss = 0.0;  // 0 = no target
  std::optional<SweepTune> tune;
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

// Runs every run that has not completed or diverged (a re-run resumes the sweep; a crashed
// run is tried once more per call), `plan.parallel` processes at a time, by executing
// `blockopt_exe run <dir>/config.yaml --out <dir>` (with `--nproc N` when nproc > 1: each run
// is then N data-parallel ranks). Crashed and diverged runs are
// recorded as such in sweep.json, never dropped. A tuned sweep then adds the runs its results
// call for (sweep_tune.cpp) and runs those, until none are added. Then writes comparison.json.
SweepOutcome run_sweep(const SweepPlan& plan, const fs::path& dir, const std::string& blockopt_exe,
                       int nproc = 1);

// `blockopt run SWEEP --worker`: one of any number of workers, on one machine or many sharing
// `dir`, that take the runs without a summary one at a time (a tuned sweep's later stages
// too: every worker derives the same next runs from the finished ones). A worker claims a run by creating
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
