#include <blockopt/experiments/callbacks.h>
#include <blockopt/experiments/optimizer_factory.h>
#include <blockopt/experiments/registry.h>
#include <blockopt/experiments/run.h>
#include <blockopt/experiments/runtime.h>
#include <blockopt/experiments/theory.h>
#include <blockopt/optim/asgo.h>
#include <blockopt/optim/state.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <sstream>
#include <thread>

namespace blockopt::experiments {

Experiment build_experiment(YAML::Node config, const std::string& origin) {
  check_config_tree(config, origin);
  auto root = ConfigNode::root(config, origin);
  Experiment e;
  e.name = root.get<std::string>("name");
  root.check(!e.name.empty() && e.name.find('/') == std::string::npos, "name",
             "must be a non-empty name without '/'");
  e.seed = root.get<uint64_t>("seed", 0);
  auto runtime = root.child("runtime");
  e.threads = runtime.get<int>("threads", 0);
  runtime.check(e.threads >= 0, "threads", "must be >= 0 (0 = all cores)");
  const auto dtype = runtime.get<std::string>("dtype", "float32");
  runtime.check(dtype == "float32" || dtype == "float64", "dtype", "must be float32 or float64");
  e.dtype = dtype == "float64" ? torch::kFloat64 : torch::kFloat32;
  auto parallel = root.child("distributed");
  e.distributed.backend = parallel.get<std::string>("backend", e.distributed.backend);
  const auto backends = distributed::available_backends();
  parallel.check(std::find(backends.begin(), backends.end(), e.distributed.backend) != backends.end(),
                 "backend", fmt::format("'{}' is not available in this LibTorch (available: {})",
                                        e.distributed.backend, fmt::join(backends, ", ")));
  const auto timeout_s = parallel.get<double>("timeout_s", 60.0);
  parallel.check(timeout_s > 0.0 && timeout_s <= 86400.0, "timeout_s", "must be in (0, 86400]");
  e.distributed.timeout = std::chrono::milliseconds(std::llround(timeout_s * 1000.0));
  const auto bucket_mb = parallel.get<double>("bucket_mb", 25.0);
  parallel.check(bucket_mb > 0.0 && bucket_mb <= 4096.0, "bucket_mb", "must be in (0, 4096]");
  e.bucket_bytes = std::max<int64_t>(1, std::llround(bucket_mb * 1024.0 * 1024.0));
  e.overlap = parallel.get<bool>("overlap", e.overlap);
  const auto shard = parallel.get<std::string>("shard_optimizer", "auto");
  parallel.check(shard == "auto" || shard == "true" || shard == "false", "shard_optimizer",
                 "must be auto, true or false");
  auto output = root.child("output");
  e.output_dir = output.get<std::string>("dir", "runs");

  seed_everything(e.seed);  // model initialisation draws from the global generator
  e.data = build_data(root.child("data"), e.seed, e.dtype);
  e.model = build_model(root.child("model"), *e.data);
  if (e.dtype != torch::kFloat32) e.model->to(e.dtype);
  e.optimizer = optim::make_optimizer(e.model->named_parameters(), root.child("optimizer"),
                                      &e.optimizer_layout);
  const auto optimizer_name = root.child("optimizer").get<std::string>("name");
  e.shard_optimizer = shard == "true" ||
                      (shard == "auto" && (optimizer_name == "muon" || optimizer_name == "normuon" ||
                                           optimizer_name == "aurora" || optimizer_name == "asgo"));
  e.trainer = read_trainer_options(root.child("train"));
  e.schedule = read_schedule(root.child("schedule"), e.trainer.steps);
  e.probes = read_probe_specs(root.children("probes"));
  e.telemetry = read_telemetry_options(root.child("telemetry"));
  if (root.has("theory")) {
    // Read by the report (theory.h); checked here so a typo fails before the run.
    auto theory = root.child("theory");
    const auto kind = theory.get<std::string>("kind");
    const auto& kinds = theory_kinds();
    theory.check(std::find(kinds.begin(), kinds.end(), kind) != kinds.end(), "kind",
                 fmt::format("unknown theory kind '{}' (known: {})", kind, fmt::join(kinds, ", ")));
    // vocab_slopes reads output_ratio records, the other kinds block ratios.
    const std::vector<std::string> measuring =
        kind == "vocab_slopes" ? std::vector<std::string>{"output_ratio", "row_ratio"}
                               : std::vector<std::string>{"full_hessian", "block_norms", "hutchinson"};
    const bool has_probe = std::any_of(e.probes.begin(), e.probes.end(), [&](const ProbeSpec& p) {
      return std::find(measuring.begin(), measuring.end(), p.type) != measuring.end();
    });
    theory.check(has_probe, "kind",
                 fmt::format("{} needs a {} probe", kind, fmt::join(measuring, " or ")));
  }
  root.check_no_unknown_keys();
  e.resolved_yaml = root.resolved_yaml();
  return e;
}

void check_sweep_runs(const SweepPlan& plan, const std::string& origin) {
  for (const auto& run : plan.runs) build_experiment(run.config, origin + " [" + run.id + "]");
}

std::string dry_run(const YAML::Node& config, const std::string& origin) {
  if (!is_sweep(config)) return build_experiment(config, origin).resolved_yaml;
  const auto plan = plan_sweep(config, origin);
  check_sweep_runs(plan, origin);
  std::string listing = fmt::format("sweep {}: {} runs\n", plan.name, plan.runs.size());
  for (const auto& run : plan.runs) listing += run.id + "\n";
  return listing;
}

namespace {

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // ru_maxrss is in KiB on Linux
}

// `state_bytes_per_rank`: a data-parallel job's optimizer state on each rank.
void write_summary(const RunDirectory& dir, const Experiment& e, const TrainResult& r,
                   const distributed::DataParallel* parallel,
                   const std::vector<double>& state_bytes_per_rank) {
  nlohmann::json summary = {
      {"name", e.name},
      {"status", status_name(r.status)},
      {"message", r.message},
      {"steps", r.steps_done},
      {"final_loss", r.final_loss},
      {"wall_time", r.wall_time},
      {"seed", e.seed},
      {"world_size", parallel ? parallel->world_size() : 1},
      {"parameters", e.model->parameter_count()},
      {"flops_per_item", e.model->flops_per_item()},
      {"optimizer_state_bytes", optim::state_bytes(*e.optimizer)},
      {"versions", version_string()},
      {"peak_rss_bytes", peak_rss_bytes()},
  };
  auto eval_json = [](const EvalMetrics& m) {
    return nlohmann::json{{"step", m.step}, {"loss", m.loss}, {"accuracy", m.accuracy}};
  };
  if (const auto* asgo = dynamic_cast<const optim::ASGO*>(e.optimizer.get())) {
    summary["asgo_nan_roots"] = asgo->nan_roots();  // steps whose root was replaced by I
    if (asgo->nan_roots() > 0) spdlog::warn("ASGO replaced {} non-finite roots by I", asgo->nan_roots());
  }
  if (parallel) {
    // This session's gradient averaging on rank 0 (copies into the buckets and allreduce).
    summary["data_parallel"] = {
        {"gradient_buckets", parallel->bucket_count()},
        {"optimizer_sharded", e.shard_optimizer},
        {"overlap", e.overlap},
        {"optimizer_state_bytes_per_rank", state_bytes_per_rank},
        {"gradient_sync_seconds_per_step",
         parallel->gradient_syncs() > 0 ? parallel->gradient_sync_seconds() / parallel->gradient_syncs() : 0.0}};
  }
  if (r.final_eval) summary["final_eval"] = eval_json(*r.final_eval);
  if (r.best_eval) summary["best_eval"] = eval_json(*r.best_eval);
  write_file_atomic(dir.summary_path(), summary.dump(2) + "\n");
}

}  // namespace

YAML::Node load_run_config(const RunRequest& request) {
  auto yaml = load_yaml_file(request.config_path);
  for (const auto& assignment : request.overrides) apply_override(yaml, assignment);
  return yaml;
}

RunOutcome run_experiment(const RunRequest& request) {
  return run_experiment(load_run_config(request), request);
}

RunOutcome run_experiment(YAML::Node yaml, const RunRequest& request) {
  // Threads first: they can change floating-point reduction order, so they are config.
  // build_experiment checks the value; a malformed one here just means the default.
  // The ranks on one machine share its cores.
  const auto job = distributed::launch_environment_from_env();
  if (job && job->world_size > 1) name_rank_in_logs(job->rank);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = yaml["runtime"].IsMap() && yaml["runtime"]["threads"]
                          ? yaml["runtime"]["threads"].as<int>(0) : 0;
  configure_runtime(threads > 0 || !job ? threads : std::max(1, cores / job->local_world_size));
  auto experiment = build_experiment(yaml, request.config_path);

  // One rank of a data-parallel job: rank 0 alone writes the run directory and logs progress.
  std::shared_ptr<distributed::DataParallel> parallel;
  std::shared_ptr<distributed::OptimizerSharding> sharding;
  if (job && job->world_size > 1) {
    const auto group = distributed::ProcessGroup::join(*job, experiment.distributed);
    parallel = std::make_shared<distributed::DataParallel>(
        group, experiment.model->parameters(), experiment.bucket_bytes, experiment.overlap);
    parallel->broadcast_parameters();
    if (experiment.shard_optimizer) {
      sharding = std::make_shared<distributed::OptimizerSharding>(group, *experiment.optimizer);
    }
  }
  const bool writer = !parallel || parallel->rank() == 0;

  RunOutcome outcome;
  outcome.wrote_run_directory = writer;
  outcome.dir = request.out_dir ? fs::path(*request.out_dir)
                                : fs::path(experiment.output_dir) / experiment.name;
  RunDirectory dir(outcome.dir);
  auto state = RunDirectory::State::Fresh;
  if (writer) state = dir.claim(experiment.resolved_yaml);
  if (parallel) {
    // The other ranks follow rank 0's reading of the directory.
    const std::string key = "blockopt/run_state";
    if (writer) parallel->group().store_set(key, std::to_string(static_cast<int>(state)));
    state = static_cast<RunDirectory::State>(std::stoi(parallel->group().store_get(key)));
  }
  if (state == RunDirectory::State::Complete) {
    spdlog::info("run {} is already complete in {}", experiment.name, outcome.dir.string());
    outcome.already_complete = true;
    return outcome;
  }

  Trainer trainer(experiment.model, experiment.data, experiment.optimizer, experiment.schedule,
                  experiment.trainer);
  trainer.set_data_parallel(parallel);
  trainer.set_optimizer_sharding(sharding);
  if (state == RunDirectory::State::Resumable) {
    // NOTE: every rank reads rank 0's checkpoint, so a job over several machines needs the
    // run directory on a shared file system to resume.
    trainer.load_checkpoint(dir.checkpoint_path());
    outcome.resumed = true;
    spdlog::info("resuming {} from step {}", outcome.dir.string(), trainer.step());
  }
  spdlog::info("{}: {} parameters, {:.3g} forward FLOPs per item ({}), {} steps, {}run directory {}",
               experiment.name, experiment.model->parameter_count(),
               static_cast<double>(experiment.model->flops_per_item()), experiment.data->item_name(),
               experiment.trainer.steps,
               parallel ? fmt::format("{} ranks ({} gradient buckets), ", parallel->world_size(),
                                      parallel->bucket_count())
                        : "",
               outcome.dir.string());
  if (writer) {
    write_file_atomic(outcome.dir / "model.txt", experiment.model->parameter_listing());
    if (!experiment.optimizer_layout.empty()) {
      // Which parameter went where (Adam-mini blocks, matrix or fallback), kept with the run.
      write_file_atomic(outcome.dir / "optimizer_layout.txt", experiment.optimizer_layout);
      spdlog::info("optimizer layout (blocks / routing per parameter): {}",
                   (outcome.dir / "optimizer_layout.txt").string());
      spdlog::debug("optimizer layout:\n{}", experiment.optimizer_layout);
      std::istringstream lines(experiment.optimizer_layout);
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind("warning: ", 0) == 0) spdlog::warn("{}", line.substr(9));
      }
    }
    trainer.add_callback(std::make_shared<MetricsLogger>(dir, experiment.data->item_name()));
    if (experiment.telemetry.every > 0) {
      trainer.add_callback(std::make_shared<UpdateTelemetry>(dir.root() / "telemetry.jsonl",
                                                             experiment.telemetry, experiment.seed));
    }
    if (request.progress_bar) {
      trainer.add_callback(std::make_shared<ProgressBar>());
    } else {
      trainer.add_callback(std::make_shared<ConsoleLogger>());
    }
  }

  // Every rank takes part in a checkpoint (a sharded optimizer's state is gathered); rank 0 writes.
  trainer.add_callback(
      std::make_shared<Checkpointer>(dir.checkpoint_path(), experiment.trainer.checkpoint_every));
  if (!experiment.probes.empty()) {
    // Every rank computes the probes (their Hessian products are sums over the ranks).
    trainer.add_callback(std::make_shared<HessianProbe>(
        experiment.probes, writer ? dir.hessian_dir() : fs::path(), experiment.seed));
  }

  outcome.result = trainer.run();
  std::vector<double> state_bytes_per_rank;
  if (parallel) {
    state_bytes_per_rank.assign(parallel->world_size(), 0.0);
    state_bytes_per_rank[parallel->rank()] = static_cast<double>(optim::state_bytes(*experiment.optimizer));
    state_bytes_per_rank = parallel->sum(state_bytes_per_rank);
  }
  if (writer) write_summary(dir, experiment, outcome.result, parallel.get(), state_bytes_per_rank);
  if (outcome.result.status == TrainResult::Status::Diverged) {
    spdlog::error("{}: {}", experiment.name, outcome.result.message);
  }
  return outcome;
}

}  // namespace blockopt::experiments
