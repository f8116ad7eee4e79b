#include <blockopt/experiments/process.h>

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <system_error>

namespace blockopt::experiments {

pid_t spawn_logged(const std::vector<std::string>& args, const std::filesystem::path& log,
                   bool append) {
  std::vector<std::string> owned = args;
  std::vector<char*> argv;
  for (auto& arg : owned) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, owned.at(0).c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) throw std::system_error(error, std::generic_category(), "cannot start " + owned[0]);
  return pid;
}

}  // namespace blockopt::experiments
