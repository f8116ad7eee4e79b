#pragma once
#include <cstdint>
#include <string>

namespace blockopt::experiments {

struct RuntimeInfo {
  int intra_op_threads = 0;
  bool openblas_found = false;  // false: the BLAS in use is not OpenBLAS
  int openblas_threads = 0;
  bool malloc_keeps_memory = false;  // glibc mmap/trim thresholds raised (runtime.cpp)
};

// Sets torch's intra-op pool to `intra_op_threads` (0 = all cores) and OpenBLAS to one thread
// (two pools fighting over the cores cost 2x), makes glibc keep freed memory instead of
// returning it to the kernel (fresh pages cost a fault each), and logs all three. Call once
// at start-up, before large allocations.
RuntimeInfo configure_runtime(int intra_op_threads = 0);

// Logs of one rank of a job: every line carries "[rank N]"; ranks other than 0 log warnings
// and errors only (rank 0 speaks for the job).
void name_rank_in_logs(int rank);

// Seeds torch's global generator (model init, dropout).
void seed_everything(uint64_t seed);

// "blockopt 0.1.0 (git abc123), libtorch 1.13.0"
std::string version_string();

}  // namespace blockopt::experiments
