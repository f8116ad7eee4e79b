#pragma once
// Child processes: the sweep's runs, the ranks of `blockopt run --nproc`, and the CLI in tests.
#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace blockopt::experiments {

struct SpawnOptions {
  // stdout and stderr go to this file (appended, or truncated first when `append` is false);
  // unset: the child shares this process's.
  std::optional<std::filesystem::path> log;
  bool append = false;
  // Variables set (or replaced) in the child's copy of this process's environment.
  std::map<std::string, std::string> environment;
};

// Starts args[0] with argv `args` and returns its pid. Throws std::system_error naming the
// program when it cannot start.
// NOTE: posix_spawn, not fork(): blockopt processes are multithreaded (torch's thread pools),
// and a forked child of such a process may only make async-signal-safe calls before exec.
pid_t spawn(const std::vector<std::string>& args, const SpawnOptions& options = {});

// spawn() with stdout and stderr written to `log`.
pid_t spawn_logged(const std::vector<std::string>& args, const std::filesystem::path& log,
                   bool append);

// The environment that makes a blockopt child die with this process (die_with_parent_from_env),
// so that a killed sweep worker or launcher leaves no run or rank behind.
std::map<std::string, std::string> die_with_this_process();
// Called first by the CLI: when BLOCKOPT_PARENT_PID is set, the process gets SIGKILL when its
// parent dies (PR_SET_PDEATHSIG), and exits at once if the parent is already gone.
void die_with_parent_from_env();

// "exited with code 3" / "was killed by signal 9 (Killed)", for a waitpid() status.
std::string describe_exit(int status);

}  // namespace blockopt::experiments
