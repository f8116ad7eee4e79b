#pragma once
// Child processes: the sweep's runs, and the CLI in tests.
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace blockopt::experiments {

// Starts args[0] with argv `args`, its stdout and stderr written to `log` (appended, or
// truncated first when `append` is false), and returns its pid. Throws std::system_error
// naming the program when it cannot start.
// NOTE: posix_spawn, not fork(): blockopt processes are multithreaded (torch's thread pools),
// and a forked child of such a process may only make async-signal-safe calls before exec.
pid_t spawn_logged(const std::vector<std::string>& args, const std::filesystem::path& log,
                   bool append);

}  // namespace blockopt::experiments
