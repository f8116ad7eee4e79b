// Running a sweep's runs as child processes, `parallel` at a time (sweep.h: run_sweep).
#include <blockopt/experiments/detail/sweep.h>
#include <blockopt/experiments/process.h>
#include <blockopt/experiments/sweep.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <map>
#include <optional>
#include <system_error>

namespace blockopt::experiments {

namespace {

std::string yaml_text(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return std::string(out.c_str()) + "\n";
}

// Starts `blockopt_exe run <run_dir>/config.yaml --out <run_dir> --no-progress [--nproc N]`
// with its stdout and stderr appended to <run_dir>/run.log; returns its pid, or nothing
// (logging why) when it cannot start.
std::optional<pid_t> start_run(const std::string& blockopt_exe, const fs::path& run_dir, int nproc) {
  std::vector<std::string> args = {blockopt_exe, "run", (run_dir / "config.yaml").string(),
                                   "--out", run_dir.string(), "--no-progress"};
  if (nproc > 1) args.insert(args.end(), {"--nproc", std::to_string(nproc)});
  try {
    return spawn_logged(args, run_dir / "run.log", /*append=*/true);
  } catch (const std::system_error& error) {
    spdlog::error("{} for {}", error.what(), run_dir.string());
    return std::nullopt;
  }
}

}  // namespace

SweepOutcome run_sweep(const SweepPlan& plan, const fs::path& dir, const std::string& blockopt_exe,
                       int nproc) {
  fs::create_directories(dir / "runs");
  nlohmann::json index = {{"name", plan.name}, {"target_loss", plan.target_loss}, {"runs", nlohmann::json::array()}};
  for (const auto& run : plan.runs) {
    index["runs"].push_back({{"id", run.id}, {"optimizer", run.optimizer_label},
                             {"lr_multiplier", run.lr_multiplier}, {"seed", run.seed},
                             {"lr", run.config["optimizer"]["lr"] ? run.config["optimizer"]["lr"].as<double>() : 0.0}});
  }
  write_file_atomic(dir / "sweep.json", index.dump(2) + "\n");

  // Runs still to do; each writes its config where `blockopt run` expects it.
  std::vector<size_t> todo;
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    const auto run_dir = dir / "runs" / plan.runs[i].id;
    auto summary = detail::read_json_or_null(run_dir / "summary.json");
    if (summary.is_object() && summary.value("status", "") == "completed") continue;
    fs::create_directories(run_dir);
    write_file_atomic(run_dir / "config.yaml", yaml_text(plan.runs[i].config));
    todo.push_back(i);
  }
  spdlog::info("sweep {}: {} runs, {} to do, {} at a time", plan.name, plan.runs.size(), todo.size(),
               plan.parallel);

  std::map<pid_t, size_t> active;
  std::map<size_t, int> exit_codes;
  auto reap_one = [&] {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid <= 0 || !active.count(pid)) return;
    exit_codes[active[pid]] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    active.erase(pid);
  };
  for (size_t i : todo) {
    while (static_cast<int>(active.size()) >= plan.parallel) reap_one();
    const auto run_dir = dir / "runs" / plan.runs[i].id;
    spdlog::info("sweep {}: starting {}", plan.name, plan.runs[i].id);
    if (const auto pid = start_run(blockopt_exe, run_dir, nproc)) {
      active[*pid] = i;
    } else {
      exit_codes[i] = 127;  // a shell's code for a command it cannot run; recorded as failed below
    }
  }
  while (!active.empty()) reap_one();

  SweepOutcome outcome;
  outcome.dir = dir;
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    const auto run_dir = dir / "runs" / plan.runs[i].id;
    auto summary = detail::read_json_or_null(run_dir / "summary.json");
    const std::string status = summary.is_object() ? summary.value("status", "failed") : "failed";
    if (status == "completed") ++outcome.completed;
    else if (status == "diverged") ++outcome.diverged;
    else {
      ++outcome.failed;
      // A crash leaves no summary: record it (with the exit code) so it is never dropped.
      nlohmann::json failed = {{"name", plan.runs[i].id}, {"status", "failed"},
                               {"message", fmt::format("process exited with code {}; see run.log",
                                                       exit_codes.count(i) ? exit_codes[i] : -1)}};
      write_file_atomic(run_dir / "summary.json", failed.dump(2) + "\n");
    }
  }
  write_file_atomic(dir / "comparison.json", compare_sweep(dir).dump(2) + "\n");
  return outcome;
}

}  // namespace blockopt::experiments
