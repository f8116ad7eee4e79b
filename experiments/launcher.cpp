#include <blockopt/distributed/process_group.h>
#include <blockopt/experiments/launcher.h>
#include <blockopt/experiments/process.h>

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>

namespace blockopt::experiments {

namespace {

volatile std::sig_atomic_t forwarded_signal = 0;

void remember_signal(int signal) { forwarded_signal = signal; }

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int launch_local_ranks(int nproc, const std::vector<std::string>& rank_args) {
  if (nproc < 1) throw std::invalid_argument("--nproc must be >= 1");
  distributed::StoreServer store("127.0.0.1");
  std::map<pid_t, int> running;  // pid -> rank
  std::vector<pid_t> pids;
  for (int rank = 0; rank < nproc; ++rank) {
    SpawnOptions options;
    options.environment =
        distributed::environment_variables(distributed::local_launch(rank, nproc, store.port()));
    options.environment.merge(die_with_this_process());  // no rank outlives the launcher
    const pid_t pid = spawn(rank_args, options);
    running[pid] = rank;
    pids.push_back(pid);
  }
  spdlog::info("launched {} ranks (store on 127.0.0.1:{})", nproc, store.port());

  struct sigaction action {}, old_int {}, old_term {};
  action.sa_handler = remember_signal;  // no SA_RESTART: waitpid returns EINTR
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);

  int result = 0;
  std::optional<std::chrono::steady_clock::time_point> kill_at;
  auto stop_all = [&](int signal) {
    for (const auto& [pid, rank] : running) kill(pid, signal);
  };
  while (!running.empty()) {
    if (forwarded_signal != 0) {
      spdlog::warn("launcher: passing signal {} to the ranks", static_cast<int>(forwarded_signal));
      stop_all(forwarded_signal);
      if (result == 0) result = 128 + forwarded_signal;
      forwarded_signal = 0;
      if (!kill_at) kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, kill_at ? WNOHANG : 0);
    if (pid > 0 && running.count(pid) != 0) {
      const int rank = running[pid];
      running.erase(pid);
      if (exit_code(status) != 0 && result == 0) {
        result = exit_code(status);
        spdlog::error("rank {} {}; stopping the other ranks", rank, describe_exit(status));
        stop_all(SIGTERM);
        kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      }
      continue;
    }
    if (kill_at && std::chrono::steady_clock::now() >= *kill_at) {
      stop_all(SIGKILL);
      kill_at = std::chrono::steady_clock::now() + std::chrono::hours(1);
    }
    if (kill_at) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace blockopt::experiments
