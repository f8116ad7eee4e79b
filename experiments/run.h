#pragma once
// One run end to end: config -> model, data, optimizer, trainer -> run directory.
#include <blockopt/experiments/config.h>
#include <blockopt/experiments/probes.h>
#include <blockopt/experiments/run_dir.h>
#include <blockopt/experiments/sweep.h>
#include <blockopt/experiments/telemetry.h>
#include <blockopt/experiments/trainer.h>
#include <blockopt/distributed/process_group.h>

#include <optional>
#include <string>
#include <vector>

namespace blockopt::experiments {

// Everything a config describes, built and checked (unknown keys already rejected).
struct Experiment {
  std::string name;
  uint64_t seed = 0;
  std::string output_dir;
  int threads = 0;
  torch::Dtype dtype = torch::kFloat32;  // runtime.dtype: parameters and generated features
  // The `distributed:` section: used when the run is one rank of a job (launch_environment.h).
  distributed::GroupOptions distributed;
  int64_t bucket_bytes = 25 << 20;
  bool overlap = false;  // distributed.overlap: allreduce buckets during backward
  // distributed.shard_optimizer, resolved: auto = the matrix optimizers (Muon, NorMuon,
  // Aurora, ASGO), whose orthogonalisations and roots are the step's work.
  bool shard_optimizer = false;
  std::string resolved_yaml;
  std::shared_ptr<models::Model> model;
  std::shared_ptr<data::DataSource> data;
  std::shared_ptr<torch::optim::Optimizer> optimizer;
  std::string optimizer_layout;  // make_optimizer's parameter layout (blocks / routing)
  LrSchedule schedule;
  TrainerOptions trainer;
  // Hessian probes; run_experiment turns them into one HessianProbe callback writing to the
  // run directory's hessian/ (the directory is only known there).
  std::vector<ProbeSpec> probes;
  TelemetryOptions telemetry;  // per-layer update statistics (telemetry.h)
};

// `origin` names the source in error messages (the file path).
Experiment build_experiment(YAML::Node config, const std::string& origin);

// Builds every run of a sweep (data sets included), so a config error stops the sweep before
// any run starts; `origin` plus the run id names the source in error messages.
void check_sweep_runs(const SweepPlan& plan, const std::string& origin);

// `blockopt run --dry-run`: checks and resolves `config` as a run would (a sweep: plans it
// and builds every run) without creating a directory or training. Returns what to print:
// the resolved YAML, or for a sweep the number of runs and each run id.
std::string dry_run(const YAML::Node& config, const std::string& origin);

struct RunRequest {
  std::string config_path;
  std::vector<std::string> overrides;  // a.b=value
  std::optional<std::string> out_dir;  // default: <output.dir>/<name>
  bool progress_bar = false;
};

struct RunOutcome {
  fs::path dir;
  TrainResult result;
  bool resumed = false;
  bool already_complete = false;
  bool wrote_run_directory = true;  // false on the ranks other than 0 of a job
};

// The config file with the --set overrides applied.
YAML::Node load_run_config(const RunRequest& request);

RunOutcome run_experiment(const RunRequest& request);
RunOutcome run_experiment(YAML::Node config, const RunRequest& request);

}  // namespace blockopt::experiments
