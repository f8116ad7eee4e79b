// GPT training-step throughput (forward, cross-entropy, backward, AdamW; float32) in tokens/s,
// against the same architecture in PyTorch eager (bench/gpt_python_bench.py, run by
// BM_GPTTrainStepPython in the same process run, with the same torch thread count and, as in
// every blockopt process, OpenBLAS single-threaded).
// Run: build/blockopt_bench --benchmark_filter=GPTTrainStep
// Measured 2026-11-23 on 2 shared cores under load average 6-8 (other builds running), so
// noisy: C++ 3449 tokens/s vs Python 2372 (1.45x); in a busier moment 867 vs 1094 (0.79x);
// an earlier run with Python's OpenBLAS multi-threaded gave 1092 vs 551 (1.98x). The 1.3x
// goal needs confirming on an idle machine.
#include <blockopt/models/gpt.h>
#include <blockopt/models/loss.h>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

namespace {

using blockopt::models::GPT;
using blockopt::models::GPTOptions;

// The architecture document's example model: vocab 2000, d_model 128, 4 layers, 4 heads,
// context 128, batch 16.
const GPTOptions kOptions = GPTOptions().vocab(2000).d_model(128).layers(4).heads(4).context(128);
constexpr int64_t kBatch = 16;
constexpr int64_t kTokensPerStep = kBatch * 128;

double g_cpp_tokens_per_s = 0;  // last C++ measurement, for the speed-up counter

void BM_GPTTrainStep(benchmark::State& state) {
  torch::manual_seed(0);
  GPT model(kOptions);
  torch::optim::AdamW optimizer(model.parameters(), torch::optim::AdamWOptions(1e-3));
  auto tokens = torch::randint(kOptions.vocab(), {kBatch, kOptions.context()}, torch::kLong);
  auto targets = torch::randint(kOptions.vocab(), {kBatch, kOptions.context()}, torch::kLong);
  auto step = [&] {
    optimizer.zero_grad();
    auto loss = blockopt::models::compute_loss(model.forward(tokens), targets,
                                               blockopt::models::Loss::CrossEntropy);
    loss.backward();
    optimizer.step();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up, as in the Python script
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) step();
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  g_cpp_tokens_per_s = static_cast<double>(state.iterations() * kTokensPerStep) / seconds.count();
  state.counters["tokens_per_s"] = g_cpp_tokens_per_s;
  state.counters["threads"] = at::get_num_threads();
}
BENCHMARK(BM_GPTTrainStep)->Unit(benchmark::kMillisecond)->MinTime(5.0);

void BM_GPTTrainStepPython(benchmark::State& state) {
  const std::string script = BLOCKOPT_SOURCE_DIR "/bench/gpt_python_bench.py";
  if (!std::filesystem::exists("/usr/bin/python3")) {
    state.SkipWithError("/usr/bin/python3 not found");
    return;
  }
  const auto o = kOptions;
  const std::string command =
      "OPENBLAS_NUM_THREADS=1 /usr/bin/python3 " + script + " --vocab " +
      std::to_string(o.vocab()) + " --d-model " + std::to_string(o.d_model()) + " --layers " +
      std::to_string(o.layers()) + " --heads " + std::to_string(o.heads()) + " --context " +
      std::to_string(o.context()) + " --batch " +
      std::to_string(kBatch) + " --steps 20 --threads " + std::to_string(at::get_num_threads());
  for (auto _ : state) {
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
    std::string output;
    char buffer[4096];
    size_t n;
    while (pipe && (n = fread(buffer, 1, sizeof(buffer), pipe.get())) > 0) output.append(buffer, n);
    auto result = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
    if (result.is_discarded() || !result.contains("tokens_per_s")) {
      state.SkipWithError(("python baseline failed (is torch installed for /usr/bin/python3?): " +
                           command).c_str());
      return;
    }
    state.SetIterationTime(result["step_ms"].get<double>() / 1e3);
    const auto tokens_per_s = result["tokens_per_s"].get<double>();
    state.counters["tokens_per_s"] = tokens_per_s;
    if (g_cpp_tokens_per_s > 0) state.counters["cpp_speedup"] = g_cpp_tokens_per_s / tokens_per_s;
  }
}
BENCHMARK(BM_GPTTrainStepPython)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(1);

}  // namespace
