#pragma once
#include <cstdint>
#include <string>

namespace blockopt::experiments {

struct RuntimeInfo {
  int intra_op_threads = 0;
  bool openblas_found = false;  // false: the BLAS in use is not OpenBLAS
  int openblas_threads = 0;
};

// Sets torch's intra-op pool to `intra_op_threads` (0 = all cores) and OpenBLAS to one thread
// (two pools fighting over the cores cost 2x), and logs both. Call once at start-up.
RuntimeInfo configure_runtime(int intra_op_threads = 0);

// Seeds torch's global generator (model init, dropout).
void seed_everything(uint64_t seed);

// "blockopt 0.1.0 (git abc123), libtorch 1.13.0"
std::string version_string();

}  // namespace blockopt::experiments
