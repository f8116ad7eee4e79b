#pragma once
// `blockopt run CONFIG --nproc N`: N ranks of one run on this machine, as
// `torchrun --standalone --nproc-per-node N` starts them.
#include <string>
#include <vector>

namespace blockopt::experiments {

// Hosts the rendezvous store (a c10d TCPStore on a free loopback port, as torchrun's agent
// does), starts `rank_args` N times with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT and TORCHELASTIC_USE_AGENT_STORE set, and waits for every rank.
// When one fails, the others are stopped (SIGTERM, then SIGKILL after 10 s) and the error
// names the first rank that failed and how. SIGINT and SIGTERM to the launcher are passed on
// to the ranks, and a rank dies with the launcher. Returns 0 when every rank exits with 0, otherwise the first failure's exit code
// (128 + signal for a rank killed by a signal).
int launch_local_ranks(int nproc, const std::vector<std::string>& rank_args);

}  // namespace blockopt::experiments
