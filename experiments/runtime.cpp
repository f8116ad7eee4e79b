#include <blockopt/experiments/runtime.h>
#include <blockopt/hessian/detail/blas_threads.h>

#include <blockopt_version.h>
#include <malloc.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <limits>
#include <thread>

namespace blockopt::experiments {

RuntimeInfo configure_runtime(int intra_op_threads) {
  RuntimeInfo info;
  // NOTE: glibc returns freed blocks above its mmap threshold, and free memory at the top of
  // the heap, to the kernel, so every fresh tensor of a training step is faulted in again page
  // by page. On this machine (a VM) that made torch::optim::AdamW 21x slower (459 vs 21.7 ms
  // on 25M parameters, bench_optim). Keep blocks up to 32 MB (glibc's largest threshold) in
  // the heap and never trim it; RSS then stays at its peak. Same as GLIBC_TUNABLES
  // glibc.malloc.mmap_threshold / trim_threshold.
  info.malloc_keeps_memory = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 &&
                             mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max()) == 1;
  info.openblas_found = hessian::detail::set_openblas_threads(1);
  info.openblas_threads = hessian::detail::openblas_threads();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  info.intra_op_threads = intra_op_threads > 0 ? intra_op_threads : cores;
  at::set_num_threads(info.intra_op_threads);
  if (info.openblas_found) {
    spdlog::info("threads: torch intra-op {}, OpenBLAS {}; malloc keeps freed memory: {}",
                 at::get_num_threads(), info.openblas_threads, info.malloc_keeps_memory);
  } else {
    spdlog::warn("threads: torch intra-op {}; OpenBLAS not found (install libopenblas0-pthread: "
                 "the reference BLAS is ~30x slower)", at::get_num_threads());
  }
  return info;
}

void name_rank_in_logs(int rank) {
  spdlog::set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [rank {}] [%^%l%$] %v", rank));
  if (rank != 0) spdlog::set_level(spdlog::level::warn);
}

void seed_everything(uint64_t seed) { torch::manual_seed(seed); }

std::string version_string() {
  return std::string("blockopt ") + BLOCKOPT_VERSION + " (git " + BLOCKOPT_GIT_SHA +
         "), libtorch " + TORCH_VERSION;
}

}  // namespace blockopt::experiments
