// Hessian benchmarks on the paper's setup (1-hidden-layer ReLU MLP, d = 500, m = 8, C = 500,
// N = 5000, CE; P = 8000): closed-form full Hessian vs the autograd row loop and Python's
// torch.autograd.functional.hessian, HVP/gradient cost ratio (also on the small GPT),
// Lanczos step cost; per-row block norms matrix-free against the full H.
// Peak memory is getrusage maxrss of the whole process (so it includes earlier benchmarks).
#include <blockopt/hessian/estimators.h>
#include <blockopt/hessian/mlp_block_norms.h>
#include <blockopt/hessian/mlp_hessian.h>
#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/partition.h>
#include <blockopt/models/gpt.h>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace bh = blockopt::hessian;
namespace bm = blockopt::models;

namespace {

double maxrss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

struct Setup {
  std::vector<torch::Tensor> weights;
  torch::Tensor x, y;
  bh::LossClosure loss() const {
    return [this] {
      return bm::compute_loss(bh::mlp_forward(weights, bm::Activation::ReLU, x), y,
                              bm::Loss::CrossEntropy);
    };
  }
};

// The full-Hessian workloads (docs/hessian.md): bias-free ReLU MLPs under cross-entropy,
// float32 as in Python's default. The benchmarks' argument indexes this table.
struct Workload {
  const char* name;
  std::vector<int64_t> widths;  // d, hidden..., C
  int64_t n;
};
const std::vector<Workload> kWorkloads = {
    {"seed_1hidden", {500, 8, 500}, 5000},    // the seed's setup, P = 8000
    {"mlp4_relu", {50, 50, 50, 50, 50}, 500},  // paper/mlp4-relu.yaml, P = 10000
    {"two_hidden", {100, 32, 32, 40}, 2000},   // P = 5504
    {"small_1hidden", {50, 8, 50}, 500},       // P = 800
};

Setup make_setup(const Workload& workload, torch::Dtype dtype = torch::kFloat) {
  torch::manual_seed(0);
  const auto& widths = workload.widths;
  Setup s;
  s.x = torch::randn({workload.n, widths.front()}, dtype);
  s.y = torch::randint(widths.back(), {workload.n}, torch::kLong);
  for (size_t l = 0; l + 1 < widths.size(); ++l) {
    s.weights.push_back((torch::randn({widths[l + 1], widths[l]}, dtype) /
                         std::sqrt(static_cast<double>(widths[l])))
                            .requires_grad_(true));
  }
  return s;
}

std::string joined_widths(const Workload& workload) {
  std::string out;
  for (auto w : workload.widths) out += (out.empty() ? "" : ",") + std::to_string(w);
  return out;
}

// Process CPU seconds (all threads): comparable across runs on a shared, loaded machine.
double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

int64_t parameter_count(const Setup& s) {
  int64_t count = 0;
  for (const auto& w : s.weights) count += w.numel();
  return count;
}

// Times `compute(setup)` (returns a tensor) on the workload of `workloads` that the benchmark's
// argument picks, in `dtype`, and reports its name, CPU seconds per iteration (all threads), P
// and peak RSS.
template <typename Compute>
void workload_benchmark(benchmark::State& state, const std::vector<Workload>& workloads,
                        torch::Dtype dtype, const Compute& compute) {
  const auto& workload = workloads.at(static_cast<size_t>(state.range(0)));
  auto s = make_setup(workload, dtype);
  const double cpu_start = cpu_seconds();
  for (auto _ : state) {
    auto h = compute(s);
    benchmark::DoNotOptimize(h.data_ptr());
  }
  state.SetLabel(workload.name);
  state.counters["cpu_s_per_iter"] =
      (cpu_seconds() - cpu_start) / static_cast<double>(state.iterations());
  state.counters["params"] = static_cast<double>(parameter_count(s));
  state.counters["maxrss_mb"] = maxrss_mb();
}

void BM_FullHessianClosedForm(benchmark::State& state) {
  workload_benchmark(state, kWorkloads, torch::kFloat, [](const Setup& s) {
    return bh::mlp_hessian_closed_form(s.weights, bm::Activation::ReLU, s.x, s.y,
                                       bm::Loss::CrossEntropy);
  });
}
BENCHMARK(BM_FullHessianClosedForm)->DenseRange(0, 3)->Unit(benchmark::kSecond)->Iterations(2);

void BM_FullHessianAutograd(benchmark::State& state) {
  workload_benchmark(state, kWorkloads, torch::kFloat, [](const Setup& s) {
    bh::HessianOperator op(s.loss(), s.weights);
    return bh::full_hessian(op);
  });
}
// The seed's size takes minutes this way; run it with --benchmark_filter=Autograd/0.
BENCHMARK(BM_FullHessianAutograd)->DenseRange(1, 3)->Arg(0)->Unit(benchmark::kSecond)
    ->Iterations(1);

// Runs bench/hessian_python.py (torch.autograd.functional.hessian, vectorize=False) with
// /usr/bin/python3 in this session and reports its time as this benchmark's manual time.
void BM_FullHessianPython(benchmark::State& state) {
  // The source root: $BLOCKOPT_SOURCE_DIR, else the parent of the build directory.
  const char* env = std::getenv("BLOCKOPT_SOURCE_DIR");
  const auto root = env != nullptr
                        ? std::filesystem::path(env)
                        : std::filesystem::canonical("/proc/self/exe").parent_path().parent_path();
  const auto script = root / "bench" / "hessian_python.py";
  const auto& workload = kWorkloads.at(static_cast<size_t>(state.range(0)));
  const auto cmd = "/usr/bin/python3 " + script.string() + " --widths " +
                   joined_widths(workload) + " --n " + std::to_string(workload.n);
  state.SetLabel(workload.name);
  for (auto _ : state) {
    std::string out;
    FILE* pipe = popen(cmd.c_str(), "r");
    if (pipe == nullptr) {
      state.SkipWithError("cannot start /usr/bin/python3");
      return;
    }
    char buffer[512];
    while (fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
    if (pclose(pipe) != 0 || out.empty()) {
      state.SkipWithError(("python baseline failed: " + cmd).c_str());
      return;
    }
    auto result = nlohmann::json::parse(out);
    state.SetIterationTime(result.at("seconds").get<double>());
    state.counters["python_cpu_s"] = result.at("cpu_seconds").get<double>();
    state.counters["python_maxrss_mb"] = result.at("maxrss_mb").get<double>();
    state.counters["python_threads"] = result.at("threads").get<double>();
  }
}
BENCHMARK(BM_FullHessianPython)->DenseRange(0, 3)->UseManualTime()->Unit(benchmark::kSecond)->Iterations(1);

// Gradient (forward + backward) vs one HVP on a reused gradient graph vs an HVP that
// rebuilds the graph; counters are milliseconds per call.
void hvp_grad_ratio(benchmark::State& state, const bh::LossClosure& loss,
                    const std::vector<torch::Tensor>& params) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a) {
    return std::chrono::duration<double, std::milli>(Clock::now() - a).count();
  };
  double grad_ms = 0, hvp_ms = 0, rebuild_ms = 0;
  int64_t iters = 0;
  bh::HessianOperator reused(loss, params);
  auto v = torch::randn({reused.size()});
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto g = torch::autograd::grad({loss()}, params);
    benchmark::DoNotOptimize(g[0].data_ptr());
    grad_ms += ms(t0);
    t0 = Clock::now();
    benchmark::DoNotOptimize(reused.hvp(v).data_ptr());
    hvp_ms += ms(t0);
    t0 = Clock::now();
    bh::HessianOperator fresh(loss, params);
    benchmark::DoNotOptimize(fresh.hvp(v).data_ptr());
    rebuild_ms += ms(t0);
    ++iters;
  }
  state.counters["grad_ms"] = grad_ms / iters;
  state.counters["hvp_ms"] = hvp_ms / iters;
  state.counters["hvp_rebuild_ms"] = rebuild_ms / iters;
  state.counters["hvp_over_grad"] = hvp_ms / grad_ms;
  state.counters["params"] = static_cast<double>(reused.size());
  state.counters["maxrss_mb"] = maxrss_mb();
}

// The paper's MLP (P = 8000).
void BM_HvpGradRatio(benchmark::State& state) {
  auto s = make_setup(kWorkloads[0]);
  hvp_grad_ratio(state, s.loss(), s.weights);
}
BENCHMARK(BM_HvpGradRatio)->Unit(benchmark::kMillisecond)->Iterations(10);

// The small GPT of bench_models (vocab 2000, d_model 128, 4 layers, 4 heads, context 128),
// float32, one batch of 16 x 128 tokens: the cost of each Hutchinson / Lanczos product.
void BM_HvpGradRatioGPT(benchmark::State& state) {
  torch::manual_seed(0);
  bm::GPT model(bm::GPTOptions().vocab(2000).d_model(128).layers(4).heads(4).context(128));
  auto tokens = torch::randint(2000, {16, 128}, torch::kLong);
  auto targets = torch::randint(2000, {16, 128}, torch::kLong);
  auto loss = [&] { return bm::compute_loss(model.forward(tokens), targets, bm::Loss::CrossEntropy); };
  hvp_grad_ratio(state, loss, model.parameters());
}
BENCHMARK(BM_HvpGradRatioGPT)->Unit(benchmark::kMillisecond)->Iterations(10);


// Cost per Lanczos step (one HVP + full reorthogonalisation) over `steps` steps, P = 8000.
void BM_LanczosStep(benchmark::State& state) {
  auto s = make_setup(kWorkloads[0]);
  bh::HessianOperator op(s.loss(), s.weights);
  auto v0 = torch::randn({op.size()});
  for (auto _ : state) {
    auto r = bh::lanczos(bh::as_matvec(op), v0, state.range(0));
    benchmark::DoNotOptimize(r.alpha.data_ptr());
  }
  state.counters["per_step_ms"] = benchmark::Counter(
      static_cast<double>(state.range(0)) * 1e-3,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["maxrss_mb"] = maxrss_mb();
}
BENCHMARK(BM_LanczosStep)->Arg(50)->Unit(benchmark::kMillisecond)->Iterations(2);

// Per-row block norms ||H_ij||_F in float64, as the theory tables take them: the argument
// indexes this table. Matrix-free costs O(N^2 B^2) for B row blocks, the full H O(N P^2) and
// P^2 memory, so each wins somewhere; at the theorems' scale only matrix-free fits.
const std::vector<Workload> kBlockNormWorkloads = {
    {"theorem1_gamma1_c20", {500, 20}, 500},  // paper/theorem1-gamma.yaml's largest, P = 10000
    {"seed_1hidden", {500, 8, 500}, 5000},   // P = 8000 in B = 508 rows: the full H is cheaper
    {"theorem1_c1000", {3000, 1000}, 3000},  // Theorem 1 at C = 1000, g = 1: P = 3e6 (72 TB H)
};

void BM_BlockNormsMatrixFree(benchmark::State& state) {
  workload_benchmark(state, kBlockNormWorkloads, torch::kDouble, [](const Setup& s) {
    return bh::mlp_block_norms(s.weights, bm::Activation::ReLU, s.x, s.y, bm::Loss::CrossEntropy);
  });
}
BENCHMARK(BM_BlockNormsMatrixFree)->DenseRange(0, 2)->Unit(benchmark::kSecond)->Iterations(1);

void BM_BlockNormsFromFullHessian(benchmark::State& state) {
  workload_benchmark(state, kBlockNormWorkloads, torch::kDouble, [](const Setup& s) {
    std::vector<bh::ParamInfo> infos;
    for (const auto& w : s.weights) infos.push_back({"w", w.sizes().vec()});
    const auto h = bh::mlp_hessian_closed_form(s.weights, bm::Activation::ReLU, s.x, s.y,
                                               bm::Loss::CrossEntropy);
    return bh::block_norms(h, bh::make_partition("per_row", infos));
  });
}
BENCHMARK(BM_BlockNormsFromFullHessian)->DenseRange(0, 1)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace
