// The blockopt command line: a thin layer over blockopt_experiments.
#include <blockopt/experiments/config.h>
#include <blockopt/experiments/launcher.h>
#include <blockopt/experiments/optimizer_factory.h>
#include <blockopt/experiments/process.h>
#include <blockopt/experiments/report.h>
#include <blockopt/experiments/run.h>
#include <blockopt/experiments/runtime.h>
#include <blockopt/experiments/sweep.h>
#include <blockopt/experiments/verify.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

namespace ex = blockopt::experiments;

int main(int argc, char** argv) {
  ex::die_with_parent_from_env();  // a run or rank started by a sweep worker or a launcher
  CLI::App app{"blockopt: optimizers and Hessian structure for LibTorch"};
  app.set_version_flag("--version", ex::version_string());
  app.require_subcommand(1);

  ex::RunRequest run;
  std::string out_dir;
  bool no_progress = false;
  auto* run_cmd = app.add_subcommand("run", "train / compare / probe as a config describes");
  run_cmd->add_option("config", run.config_path, "run config (YAML)")->required();
  run_cmd->add_option("--set", run.overrides, "override a config value: a.b=value")
      ->allow_extra_args(false);
  run_cmd->add_option("--out", out_dir, "run directory (default: <output.dir>/<name>)");
  run_cmd->add_flag("--no-progress", no_progress, "log lines instead of a progress bar");
  int nproc = 1;
  run_cmd->add_option("--nproc", nproc,
                      "start this many ranks of a data-parallel run on this machine (as "
                      "torchrun --standalone; a sweep: of each run); a job launched elsewhere "
                      "sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT instead")
      ->check(CLI::Range(1, 1024));
  bool worker = false;
  run_cmd->add_flag("--worker", worker,
                    "a sweep: be one of any number of workers (on this machine or others "
                    "sharing the directory) that claim its runs with leases");
  double lease_s = 60.0;
  run_cmd->add_option("--lease", lease_s,
                      "--worker: seconds without renewal after which a run's claim is taken over")
      ->check(CLI::PositiveNumber);
  bool dry_run = false;
  run_cmd->add_flag("--dry-run", dry_run,
                    "check and resolve the config, print it (a sweep: its run ids) and exit; "
                    "no run directory, no training");

  std::string case_path, dtype_name = "float64";
  auto* verify_cmd = app.add_subcommand("verify", "replay an oracle case; exit 0 when it passes");
  verify_cmd->add_option("case", case_path, "an oracle case manifest, e.g. tests/data/optim/adamw.json")->required();
  verify_cmd->add_option("--dtype", dtype_name, "float64 or float32")
      ->check(CLI::IsMember({"float64", "float32"}));

  std::string report_dir;
  auto* report_cmd = app.add_subcommand("report", "(re)build RUN_DIR/report.html");
  report_cmd->add_option("run_dir", report_dir, "a run or sweep directory")->required();

  auto* bench_cmd = app.add_subcommand(
      "bench", "run blockopt_bench; arguments pass through (e.g. --benchmark_filter=AdamW)");
  bench_cmd->prefix_command();

  std::string options_optimizer;
  auto* options_cmd = app.add_subcommand(
      "options", "print optimizer options as markdown tables (those of docs/optimizers.md)");
  options_cmd->add_option("optimizer", options_optimizer, "one optimizer (default: all)")
      ->check(CLI::IsMember(blockopt::optim::documented_optimizers()));

  CLI11_PARSE(app, argc, argv);

  try {
    if (*run_cmd) {
      if (!out_dir.empty()) run.out_dir = out_dir;
      run.progress_bar = !no_progress && isatty(STDERR_FILENO);
      auto config = ex::load_run_config(run);
      if (dry_run) {
        std::cout << ex::dry_run(config, run.config_path);
        return 0;
      }
      if (worker && !ex::is_sweep(config)) {
        throw std::invalid_argument("--worker takes the runs of a sweep; " + run.config_path +
                                    " has no sweep: section");
      }
      if (nproc > 1 && !ex::is_sweep(config)) {
        if (std::getenv("WORLD_SIZE") != nullptr) {
          throw std::invalid_argument("--nproc inside a launched job (WORLD_SIZE is set)");
        }
        std::vector<std::string> rank_args = {
            std::filesystem::canonical("/proc/self/exe").string(), "run", run.config_path};
        for (const auto& assignment : run.overrides) rank_args.insert(rank_args.end(), {"--set", assignment});
        if (run.out_dir) rank_args.insert(rank_args.end(), {"--out", *run.out_dir});
        if (no_progress) rank_args.push_back("--no-progress");
        return ex::launch_local_ranks(nproc, rank_args);
      }
      if (ex::is_sweep(config)) {
        const auto plan = ex::plan_sweep(config, run.config_path);
        ex::configure_runtime();
        ex::check_sweep_runs(plan, run.config_path);  // every run's config before starting any
        const auto dir = run.out_dir ? ex::fs::path(*run.out_dir)
                                     : ex::fs::path(config["output"] && config["output"]["dir"]
                                                        ? config["output"]["dir"].as<std::string>()
                                                        : "runs") / plan.name;
        const auto exe = std::filesystem::canonical("/proc/self/exe").string();
        const auto outcome = worker ? ex::run_sweep_worker(plan, dir, exe, nproc, lease_s)
                                    : ex::run_sweep(plan, dir, exe, nproc);
        std::cout << "sweep: " << outcome.completed << " completed, " << outcome.diverged
                  << " diverged, " << outcome.failed << " failed\n";
        if (outcome.wrote_comparison) {
          std::cout << "report: " << ex::write_report(dir).string() << "\n";
        }
        return outcome.failed == 0 ? 0 : 3;
      }
      const auto outcome = ex::run_experiment(config, run);
      if (outcome.already_complete) return 0;
      if (!outcome.wrote_run_directory) {
        return outcome.result.status == ex::TrainResult::Status::Completed ? 0 : 3;
      }
      std::cout << "run directory: " << outcome.dir.string() << "\n";
      if (outcome.result.status == ex::TrainResult::Status::Completed) {
        std::cout << "report: " << ex::write_report(outcome.dir).string() << "\n";
        return 0;
      }
      return 3;
    }
    if (*report_cmd) {
      std::cout << ex::write_report(report_dir).string() << std::endl;
      return 0;
    }
    if (*verify_cmd) {
      spdlog::set_level(spdlog::level::warn);
      ex::configure_runtime();
      const auto dtype = dtype_name == "float32" ? torch::kFloat32 : torch::kFloat64;
      const auto result = ex::verify_case(case_path, dtype);
      std::cout << result.to_json().dump() << std::endl;
      return result.pass ? 0 : 1;
    }
    if (*options_cmd) {
      for (const auto& name : blockopt::optim::documented_optimizers()) {
        if (options_optimizer.empty() || options_optimizer == name) {
          std::cout << "`" << name << "`:\n\n" << blockopt::optim::options_markdown(name) << "\n";
        }
      }
      return 0;
    }
    if (*bench_cmd) {
      // The benchmarks live in their own executable, installed beside this one.
      const auto exe = std::filesystem::canonical("/proc/self/exe").parent_path() / "blockopt_bench";
      std::vector<std::string> args = {exe.string()};
      args.insert(args.end(), bench_cmd->remaining().begin(), bench_cmd->remaining().end());
      std::vector<char*> argv_bench;
      for (auto& a : args) argv_bench.push_back(a.data());
      argv_bench.push_back(nullptr);
      execv(exe.c_str(), argv_bench.data());
      throw std::runtime_error("cannot run " + exe.string() + " (build the blockopt_bench target)");
    }
  } catch (const ex::ConfigError& e) {
    std::cerr << "config error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  }
  return 0;
}
