#include <blockopt/experiments/process.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <system_error>

namespace blockopt::experiments {

pid_t spawn(const std::vector<std::string>& args, const SpawnOptions& options) {
  std::vector<std::string> owned = args;
  std::vector<char*> argv;
  for (auto& arg : owned) argv.push_back(arg.data());
  argv.push_back(nullptr);

  std::vector<std::string> variables;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    if (options.environment.count(text.substr(0, text.find('='))) == 0) variables.push_back(text);
  }
  for (const auto& [name, value] : options.environment) variables.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& v : variables) envp.push_back(v.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (options.log) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, options.log->c_str(),
                                     O_WRONLY | O_CREAT | (options.append ? O_APPEND : O_TRUNC),
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  }
  pid_t pid = 0;
  const int error = posix_spawn(&pid, owned.at(0).c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) throw std::system_error(error, std::generic_category(), "cannot start " + owned[0]);
  return pid;
}

pid_t spawn_logged(const std::vector<std::string>& args, const std::filesystem::path& log,
                   bool append) {
  SpawnOptions options;
  options.log = log;
  options.append = append;
  return spawn(args, options);
}

std::map<std::string, std::string> die_with_this_process() {
  return {{"BLOCKOPT_PARENT_PID", std::to_string(getpid())}};
}

void die_with_parent_from_env() {
  const char* parent = std::getenv("BLOCKOPT_PARENT_PID");
  if (parent == nullptr) return;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (std::to_string(getppid()) != parent) _exit(1);  // the parent died before prctl
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped (wait status " + std::to_string(status) + ")";
}

}  // namespace blockopt::experiments
