// blockopt_bench: google-benchmark programs (optimizer step, HVP, full Hessian, models).
// Threads are set as in every blockopt process: torch intra-op = all cores, OpenBLAS = 1.
#include <blockopt/experiments/runtime.h>

#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  blockopt::experiments::configure_runtime();
  spdlog::set_level(spdlog::level::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
