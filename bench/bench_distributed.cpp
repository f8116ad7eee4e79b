// A Muon step on the optimizer bench's parameters (24 tensors of 512x2048) with its work
// sharded over ranks (distributed::OptimizerSharding), against one rank using every core.
// NOTE: the ranks are threads of this process, each with its own Gloo process group over
// loopback, and torch's intra-op pool is set to cores / ranks threads (every rank thread takes
// that setting); the optimizer, the collectives and the timing are those of separate
// processes, the process boundary is not. `blockopt run --nproc` runs real processes
// (bench/data_parallel.py measures those).
#include <blockopt/distributed/optimizer_sharding.h>
#include <blockopt/optim/muon.h>

#include "optimizer_bench_params.h"

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <thread>

namespace {

namespace bo = blockopt::optim;
namespace dist = blockopt::distributed;
constexpr int kSteps = 3;
const auto make_params = blockopt::bench::make_optimizer_bench_params;

bo::NamedParameters copy_of(const bo::NamedParameters& named) {
  bo::NamedParameters copy;
  for (const auto& item : named) {
    auto p = item.value().detach().clone().set_requires_grad(true);
    p.mutable_grad() = item.value().grad().clone();
    copy.insert(item.key(), p);
  }
  return copy;
}

// range(0) ranks, each with cores / ranks intra-op threads; kSteps steps after a warm-up
// step. Reported time: the slowest rank's wall time per step; counters: the optimizer's and
// the broadcasts' time per step on the slowest rank.
void BM_MuonStep_Sharded(benchmark::State& state) {
  const int ranks = static_cast<int>(state.range(0));
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads_before = at::get_num_threads();
  at::set_num_threads(std::max(1, cores / ranks));
  torch::NoGradGuard no_grad;
  const auto named = make_params();
  for (auto _ : state) {
    std::vector<double> wall(ranks), update(ranks), broadcast(ranks);
    auto run_rank = [&](int rank, std::shared_ptr<dist::ProcessGroup> group) {
      torch::NoGradGuard no_grad_here;  // grad mode is per thread
      auto params = copy_of(named);
      bo::Muon muon(params, bo::MuonOptions(0.02));
      if (!group) {
        muon.step();  // warm-up: allocates the state
        const auto start = std::chrono::steady_clock::now();
        for (int s = 0; s < kSteps; ++s) muon.step();
        wall[rank] = update[rank] =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / kSteps;
        return;
      }
      dist::OptimizerSharding sharding(group, muon);
      sharding.step();
      group->barrier();
      const double update0 = sharding.update_seconds(), broadcast0 = sharding.broadcast_seconds();
      const auto start = std::chrono::steady_clock::now();
      for (int s = 0; s < kSteps; ++s) sharding.step();
      wall[rank] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / kSteps;
      update[rank] = (sharding.update_seconds() - update0) / kSteps;
      broadcast[rank] = (sharding.broadcast_seconds() - broadcast0) / kSteps;
    };
    if (ranks == 1) {
      run_rank(0, nullptr);
    } else {
      dist::StoreServer store("127.0.0.1");
      std::vector<std::thread> workers;
      for (int rank = 0; rank < ranks; ++rank) {
        workers.emplace_back([&, rank] {
          run_rank(rank, dist::ProcessGroup::join(dist::local_launch(rank, ranks, store.port()), {}));
        });
      }
      for (auto& w : workers) w.join();
    }
    const auto slowest = std::max_element(wall.begin(), wall.end()) - wall.begin();
    state.SetIterationTime(wall[slowest]);
    state.counters["update_ms"] = update[slowest] * 1e3;
    state.counters["broadcast_ms"] = broadcast[slowest] * 1e3;
    state.counters["threads_per_rank"] = at::get_num_threads();
  }
  at::set_num_threads(threads_before);
}

}  // namespace

BENCHMARK(BM_MuonStep_Sharded)->Arg(1)->Arg(2)->ArgName("ranks")->Unit(benchmark::kMillisecond)
    ->UseManualTime()->Iterations(1)->Repetitions(3);
