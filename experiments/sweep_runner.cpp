// Running a sweep's runs as child processes: `parallel` at a time (run_sweep), or one at a
// time as one of many workers that claim runs with leases (run_sweep_worker).
#include <blockopt/experiments/detail/sweep.h>
#include <blockopt/experiments/process.h>
#include <blockopt/experiments/sweep.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>
#include <signal.h>
#include <fcntl.h>

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <thread>

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
  SpawnOptions options;
  options.log = run_dir / "run.log";
  options.append = true;
  options.environment = die_with_this_process();
  try {
    return spawn(args, options);
  } catch (const std::system_error& error) {
    spdlog::error("{} for {}", error.what(), run_dir.string());
    return std::nullopt;
  }
}

// sweep.json (the plan's index) and, for every run for which `todo` holds, its config.yaml
// where `blockopt run` expects it; returns the indices of those runs. Every write is atomic
// and the same from every worker.
template <typename Todo>
std::vector<size_t> prepare_sweep(const SweepPlan& plan, const fs::path& dir, Todo todo) {
  fs::create_directories(dir / "runs");
  nlohmann::json index = {{"name", plan.name}, {"target_loss", plan.target_loss}, {"runs", nlohmann::json::array()}};
  if (plan.tune) {
    index["tune"] = {{"lr_log2", {plan.tune->lr_log2_low, plan.tune->lr_log2_high}},
                     {"extend_to", {plan.tune->bound_low, plan.tune->bound_high}},
                     {"tuning_seeds", plan.tune->tuning_seeds},
                     {"final_seeds", plan.tune->final_seeds}};
  }
  for (const auto& run : plan.runs) {
    index["runs"].push_back({{"id", run.id}, {"optimizer", run.optimizer_label},
                             {"entry", run.entry_label}, {"workload", run.workload},
                             {"stage", run.stage},
                             {"lr_multiplier", run.lr_multiplier}, {"seed", run.seed},
                             {"lr", run.config["optimizer"]["lr"] ? run.config["optimizer"]["lr"].as<double>() : 0.0}});
  }
  write_file_atomic(dir / "sweep.json", index.dump(2) + "\n");
  std::vector<size_t> runs;
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    const auto run_dir = dir / "runs" / plan.runs[i].id;
    if (!todo(plan.runs[i], detail::read_json_or_null(run_dir / "summary.json"))) continue;
    fs::create_directories(run_dir);
    write_file_atomic(run_dir / "config.yaml", yaml_text(plan.runs[i].config));
    runs.push_back(i);
  }
  return runs;
}

// A crash leaves no summary: record it (with the exit code) so it is never dropped.
void record_crash(const fs::path& run_dir, const std::string& id, int exit_code) {
  nlohmann::json failed = {{"name", id}, {"status", "failed"},
                           {"message", fmt::format("process exited with code {}; see run.log", exit_code)}};
  write_file_atomic(run_dir / "summary.json", failed.dump(2) + "\n");
}

SweepOutcome count_outcomes(const SweepPlan& plan, const fs::path& dir) {
  SweepOutcome outcome;
  outcome.dir = dir;
  for (const auto& run : plan.runs) {
    auto summary = detail::read_json_or_null(dir / "runs" / run.id / "summary.json");
    const std::string status = summary.is_object() ? summary.value("status", "failed") : "failed";
    if (status == "completed") ++outcome.completed;
    else if (status == "diverged") ++outcome.diverged;
    else ++outcome.failed;
  }
  return outcome;
}

}  // namespace

SweepOutcome run_sweep(const SweepPlan& initial_plan, const fs::path& dir,
                       const std::string& blockopt_exe, int nproc) {
  SweepPlan plan = initial_plan;
  std::set<std::string> attempted;  // in this call: a crashed run is not retried stage after stage
  do {
    // Runs still to do: all that have not completed or diverged (both final).
    const auto todo = prepare_sweep(plan, dir, [&](const SweepRun& run, const nlohmann::json& summary) {
      const std::string status = summary.is_object() ? summary.value("status", "") : "";
      return !attempted.count(run.id) && status != "completed" && status != "diverged";
    });
    spdlog::info("sweep {}: {} runs, {} to do, {} at a time", plan.name, plan.runs.size(),
                 todo.size(), plan.parallel);

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
      attempted.insert(plan.runs[i].id);
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

    for (size_t i : todo) {
      const auto run_dir = dir / "runs" / plan.runs[i].id;
      auto summary = detail::read_json_or_null(run_dir / "summary.json");
      const std::string status = summary.is_object() ? summary.value("status", "failed") : "failed";
      if (status != "completed" && status != "diverged") {
        record_crash(run_dir, plan.runs[i].id, exit_codes.count(i) ? exit_codes[i] : -1);
      }
    }
  } while (detail::extend_tuning(plan, dir));
  write_file_atomic(dir / "comparison.json", compare_sweep(dir).dump(2) + "\n");
  return count_outcomes(plan, dir);
}

namespace {

using FileClock = fs::file_time_type::clock;

// <run_dir>/claim names the worker that runs the run; its modification time is the lease.
fs::path claim_path(const fs::path& run_dir) { return run_dir / "claim"; }

// Takes the run for `worker` when nobody holds it or the holder's lease has run out.
// NOTE: only an exclusive create (O_EXCL) takes a claim; an expired claim is first renamed
// away, which one worker alone can do, so two workers never both hold it.
bool try_claim(const fs::path& run_dir, const std::string& worker, std::chrono::duration<double> lease) {
  const auto claim = claim_path(run_dir);
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = ::open(claim.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0) {
      const bool written = ::write(fd, worker.data(), worker.size()) == static_cast<ssize_t>(worker.size());
      ::fsync(fd);
      ::close(fd);
      if (!written) throw std::runtime_error("cannot write " + claim.string());
      return true;
    }
    if (errno != EEXIST) throw std::system_error(errno, std::generic_category(), "cannot create " + claim.string());
    std::error_code error;
    const auto renewed = fs::last_write_time(claim, error);
    if (error) continue;  // released meanwhile: try again
    if (FileClock::now() - renewed < lease) return false;
    const auto expired = run_dir / ("claim.expired." + worker);
    if (::rename(claim.c_str(), expired.c_str()) == 0) {
      spdlog::warn("worker {}: the lease of {} ({}) ran out; taking the run over", worker,
                   read_file(expired), run_dir.filename().string());
      fs::remove(expired, error);
    }
  }
  return false;
}

bool holds_claim(const fs::path& run_dir, const std::string& worker) {
  try {
    return read_file(claim_path(run_dir)) == worker;
  } catch (const std::exception&) {
    return false;  // renamed away by a worker that took the run over
  }
}

// Starts the run and renews the lease every lease / 3 until it exits; returns its exit code.
// When the claim is no longer this worker's (its lease ran out while it was stopped), the run
// is stopped, so that it never runs twice.
int run_with_lease(const std::string& blockopt_exe, const fs::path& run_dir, int nproc,
                   const std::string& worker, std::chrono::duration<double> lease) {
  const auto pid = start_run(blockopt_exe, run_dir, nproc);
  if (!pid) return 127;
  const auto claim = claim_path(run_dir);
  auto renew_at = std::chrono::steady_clock::now();
  while (true) {
    int status = 0;
    if (waitpid(*pid, &status, WNOHANG) == *pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() >= renew_at) {
      std::error_code error;
      if (holds_claim(run_dir, worker)) {
        fs::last_write_time(claim, FileClock::now(), error);
      } else {
        // The run is another worker's now; its process waits for this one's lock (run_dir.h).
        spdlog::error("worker {}: lost the claim on {}; stopping its run", worker, run_dir.string());
        kill(*pid, SIGTERM);
      }
      renew_at += std::chrono::duration_cast<std::chrono::steady_clock::duration>(lease / 3);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace

SweepOutcome run_sweep_worker(const SweepPlan& initial_plan, const fs::path& dir,
                              const std::string& blockopt_exe, int nproc, double lease_s) {
  if (!(lease_s > 0.0)) throw std::invalid_argument("the lease must be > 0 seconds");
  const std::chrono::duration<double> lease(lease_s);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::string worker = fmt::format("{}:{}", host, getpid());
  // Every run without a summary: completed, diverged and crashed runs are final.
  const auto without_summary = [](const SweepRun&, const nlohmann::json& summary) {
    return !summary.is_object();
  };
  SweepPlan plan = initial_plan;
  prepare_sweep(plan, dir, without_summary);
  spdlog::info("sweep {}: worker {} (lease {} s)", plan.name, worker, lease_s);
  while (true) {
    bool pending = false, ran = false;
    for (const auto& run : plan.runs) {
      const auto run_dir = dir / "runs" / run.id;
      if (fs::exists(run_dir / "summary.json")) continue;
      pending = true;
      if (!try_claim(run_dir, worker, lease)) continue;
      if (!fs::exists(run_dir / "summary.json")) {  // it may have ended before the claim
        spdlog::info("sweep {}: worker {} runs {}", plan.name, worker, run.id);
        const int code = run_with_lease(blockopt_exe, run_dir, nproc, worker, lease);
        if (!fs::exists(run_dir / "summary.json")) record_crash(run_dir, run.id, code);
        ran = true;
      }
      if (holds_claim(run_dir, worker)) fs::remove(claim_path(run_dir));
    }
    if (!pending) {
      if (!detail::extend_tuning(plan, dir)) break;
      prepare_sweep(plan, dir, without_summary);  // the same files from every worker
      continue;
    }
    // Every remaining run is held by another worker: wait, to take it over if its lease runs out.
    if (!ran) std::this_thread::sleep_for(std::chrono::duration<double>(std::min(1.0, lease_s / 4)));
  }
  // The last run has ended: the first worker to get here writes the comparison, once.
  const auto writer = dir / "comparison.claim";
  const int fd = ::open(writer.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  auto outcome = count_outcomes(plan, dir);
  outcome.wrote_comparison = fd >= 0;
  if (fd >= 0) {
    ::close(fd);
    write_file_atomic(dir / "comparison.json", compare_sweep(dir).dump(2) + "\n");
  }
  return outcome;
}

}  // namespace blockopt::experiments
