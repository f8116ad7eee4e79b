// Optimizer step time on 25.2M parameters (24 tensors of 512x2048, fp32 grads), against
// torch::optim::AdamW, a memory-bandwidth floor (one fused pass reading m, v, g, p and writing
// m, v, p: 28 bytes/param) and the GEMM FLOP rate; plus Newton-Schulz efficiency and the ASGO
// inverse-root cost per matrix size.
#include <blockopt/blockopt.h>
#include <blockopt/optim/newton_schulz.h>

#include "optimizer_bench_params.h"

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <functional>

namespace {

namespace bo = blockopt::optim;
using blockopt::bench::kCols;
using blockopt::bench::kRows;
using blockopt::bench::kTensors;
const auto make_params = blockopt::bench::make_optimizer_bench_params;

std::vector<torch::Tensor> values(const bo::NamedParameters& named) {
  std::vector<torch::Tensor> params;
  for (const auto& item : named) params.push_back(item.value());
  return params;
}

using Factory = std::function<std::unique_ptr<torch::optim::Optimizer>(const bo::NamedParameters&)>;

void run_step(benchmark::State& state, const Factory& factory) {
  torch::NoGradGuard no_grad;
  auto named = make_params();
  auto optimizer = factory(named);
  optimizer->step();  // allocate the state outside the timed loop
  for (auto _ : state) optimizer->step();
  const auto params = static_cast<double>(kTensors * kRows * kCols);
  state.counters["params"] = params;
  state.counters["state_MB"] = static_cast<double>(bo::state_bytes(*optimizer)) / 1e6;
}

void BM_Step_TorchAdamW(benchmark::State& state) {
  run_step(state, [](const bo::NamedParameters& n) {
    return std::make_unique<torch::optim::AdamW>(values(n), torch::optim::AdamWOptions(1e-3));
  });
}
void BM_Step_AdamW(benchmark::State& state) {
  const bool fused = state.range(0) != 0;
  run_step(state, [fused](const bo::NamedParameters& n) {
    auto opt = std::make_unique<bo::AdamW>(values(n), bo::AdamWOptions(1e-3));
    opt->set_fused(fused);
    return opt;
  });
}
void BM_Step_AdamMini(benchmark::State& state) {
  const bool fused = state.range(0) != 0;
  run_step(state, [fused](const bo::NamedParameters& n) {
    auto opt = std::make_unique<bo::AdamMini>(n, bo::AdamMiniOptions(1e-3));
    opt->set_fused(fused);
    return opt;
  });
}
void BM_Step_Muon(benchmark::State& state) {
  run_step(state, [](const bo::NamedParameters& n) {
    return std::make_unique<bo::Muon>(n, bo::MuonOptions(0.02));
  });
}
void BM_Step_NorMuon(benchmark::State& state) {
  run_step(state, [](const bo::NamedParameters& n) {
    return std::make_unique<bo::NorMuon>(n, bo::NorMuonOptions(0.02));
  });
}
void BM_Step_ASGO(benchmark::State& state) {
  run_step(state, [](const bo::NamedParameters& n) {
    return std::make_unique<bo::ASGO>(n, bo::ASGOOptions(1e-2));
  });
}

// The floor: one parallel pass over 25.2M fp32 elements reading p, g, m, v, writing p, m, v.
void BM_BandwidthFloor(benchmark::State& state) {
  const int64_t n = kTensors * kRows * kCols;
  auto p = torch::randn({n}), g = torch::randn({n}), m = torch::zeros({n}), v = torch::zeros({n});
  float *pp = p.data_ptr<float>(), *mp = m.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  for (auto _ : state) {
    at::parallel_for(0, n, 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float gi = gp[i];
        mp[i] = 0.9f * mp[i] + gi;
        vp[i] = 0.999f * vp[i] + gi;
        pp[i] -= 1e-3f * gi;
      }
    });
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 28);
}

// GEMM rate for the NS shapes: (512, 2048) x (2048, 512).
void BM_Gemm(benchmark::State& state) {
  auto x = torch::randn({kRows, kCols});
  for (auto _ : state) benchmark::DoNotOptimize(x.mm(x.t()));
  state.counters["FLOPs"] = benchmark::Counter(2.0 * kRows * kRows * kCols,
                                               benchmark::Counter::kIsIterationInvariantRate);
}

// Newton-Schulz on one (512, 2048) matrix, 5 steps: per step X X^T, A A, (.) X.
void BM_NewtonSchulz(benchmark::State& state) {
  auto g = torch::randn({kRows, kCols});
  for (auto _ : state) benchmark::DoNotOptimize(bo::newton_schulz(g, 5, bo::NsEpsMode::add));
  const double per_step = 2.0 * kRows * kRows * kCols * 2 + 2.0 * kRows * kRows * kRows;
  state.counters["FLOPs"] =
      benchmark::Counter(5 * per_step, benchmark::Counter::kIsIterationInvariantRate);
}

// ASGO inverse root of an (n, n) PSD matrix; range(1): 0 polar_express (10 steps), 1 eigh.
void BM_AsgoRoot(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto g = torch::randn({n, 2 * n});
  auto p = g.mm(g.t()) / (2.0 * n);
  for (auto _ : state) {
    benchmark::DoNotOptimize(state.range(1) == 0 ? bo::inverse_root_polar_express(p, 1e-10, 10)
                                                 : bo::inverse_root_eigh(p, 1e-8));
  }
  state.SetLabel(state.range(1) == 0 ? "polar_express" : "eigh");
}

}  // namespace

BENCHMARK(BM_Step_TorchAdamW)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Step_AdamW)->Arg(1)->Arg(0)->ArgName("fused")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Step_AdamMini)->Arg(1)->Arg(0)->ArgName("fused")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Step_Muon)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_Step_NorMuon)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_Step_ASGO)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_BandwidthFloor)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Gemm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_NewtonSchulz)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AsgoRoot)
    ->ArgsProduct({{128, 256, 512, 1024}, {0, 1}})
    ->ArgNames({"n", "eigh"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
