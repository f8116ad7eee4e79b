#include <blockopt/distributed/launch_environment.h>

#include <cstdlib>
#include <stdexcept>

namespace blockopt::distributed {

namespace {

const char* variable(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

// The integer in `name`, which must be set and lie in [lo, hi].
int integer_variable(const char* name, int lo, int hi) {
  const char* text = variable(name);
  if (text == nullptr) {
    throw std::invalid_argument(std::string(name) + " is not set (WORLD_SIZE is: a distributed "
                                "job needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)");
  }
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < lo || value > hi) {
    throw std::invalid_argument(std::string(name) + "='" + text + "' is not an integer in [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int>(value);
}

}  // namespace

std::optional<LaunchEnvironment> launch_environment_from_env() {
  if (variable("WORLD_SIZE") == nullptr) return std::nullopt;
  LaunchEnvironment env;
  env.world_size = integer_variable("WORLD_SIZE", 1, 1 << 20);
  env.rank = integer_variable("RANK", 0, env.world_size - 1);
  env.local_rank = variable("LOCAL_RANK") ? integer_variable("LOCAL_RANK", 0, env.world_size - 1)
                                          : env.rank;
  env.local_world_size = variable("LOCAL_WORLD_SIZE")
                             ? integer_variable("LOCAL_WORLD_SIZE", 1, env.world_size) : 1;
  const char* addr = variable("MASTER_ADDR");
  if (addr == nullptr) throw std::invalid_argument("MASTER_ADDR is not set (WORLD_SIZE is)");
  env.master_addr = addr;
  env.master_port = integer_variable("MASTER_PORT", 1, 65535);
  const char* agent = variable("TORCHELASTIC_USE_AGENT_STORE");
  env.launcher_hosts_store = agent != nullptr && std::string(agent) == "True";
  return env;
}

LaunchEnvironment local_launch(int rank, int world, int port) {
  LaunchEnvironment env;
  env.rank = env.local_rank = rank;
  env.world_size = env.local_world_size = world;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  env.launcher_hosts_store = true;
  return env;
}

std::map<std::string, std::string> environment_variables(const LaunchEnvironment& env) {
  return {{"RANK", std::to_string(env.rank)},
          {"WORLD_SIZE", std::to_string(env.world_size)},
          {"LOCAL_RANK", std::to_string(env.local_rank)},
          {"LOCAL_WORLD_SIZE", std::to_string(env.local_world_size)},
          {"MASTER_ADDR", env.master_addr},
          {"MASTER_PORT", std::to_string(env.master_port)},
          {"TORCHELASTIC_USE_AGENT_STORE", env.launcher_hosts_store ? "True" : "False"}};
}

}  // namespace blockopt::distributed
