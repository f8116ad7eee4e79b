// blockopt_bench: google-benchmark programs (optimizer step, HVP, full Hessian, models).
// Threads are set as in every blockopt process: torch intra-op = all cores, OpenBLAS = 1.
// BLOCKOPT_BENCH_PLAIN=1 measures as a plain LibTorch program would run: intra-op threads set
// to the cores, glibc's malloc left at its defaults (configure_runtime() not called).
#include <blockopt/experiments/runtime.h>

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  const char* plain_env = std::getenv("BLOCKOPT_BENCH_PLAIN");
  const bool plain = plain_env != nullptr && std::string(plain_env) == "1";
  if (plain) {
    at::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
  } else {
    blockopt::experiments::configure_runtime();
  }
  spdlog::set_level(spdlog::level::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("malloc", plain ? "glibc defaults (plain program)"
                                              : "configure_runtime()");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
