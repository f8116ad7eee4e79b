#pragma once
// Where this process sits in a job: the variables torchrun (and `blockopt run --nproc`) set.
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace blockopt::distributed {

struct LaunchEnvironment {
  int rank = 0;        // RANK: 0 .. world_size - 1
  int world_size = 1;  // WORLD_SIZE
  int local_rank = 0;  // LOCAL_RANK: the rank on this machine
  int local_world_size = 1;  // LOCAL_WORLD_SIZE: ranks on this machine (1 when unset)
  std::string master_addr = "127.0.0.1";  // MASTER_ADDR: where the rendezvous store listens
  int master_port = 29500;                // MASTER_PORT
  // TORCHELASTIC_USE_AGENT_STORE=True: the launcher hosts the store and every rank is a
  // client (torchrun and `--nproc`); otherwise rank 0 hosts it.
  bool launcher_hosts_store = false;

  bool store_server() const { return rank == 0 && !launcher_hosts_store; }
};

// The job described by the environment, as torchrun sets it; nullopt when WORLD_SIZE is unset
// (a single process). Throws std::invalid_argument naming the variable that is missing or
// malformed.
std::optional<LaunchEnvironment> launch_environment_from_env();

// Rank `rank` of `world` ranks on this machine, all joining the store a launcher hosts on
// 127.0.0.1:`port` (what `blockopt run --nproc` gives each rank).
LaunchEnvironment local_launch(int rank, int world, int port);

// The variables that place a child process at `env` (for a launcher).
std::map<std::string, std::string> environment_variables(const LaunchEnvironment& env);

}  // namespace blockopt::distributed
