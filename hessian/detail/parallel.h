#pragma once
// Spreading independent Hessian pieces over torch's intra-op threads.
#include <blockopt/hessian/detail/blas_threads.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <optional>

namespace blockopt::hessian::detail {

// How many workers parallel_round_robin uses for `count` tasks: one per intra-op thread, at
// most `max_workers`.
inline int64_t round_robin_workers(int64_t count, int64_t max_workers = INT64_MAX) {
  const auto threads = static_cast<int64_t>(at::get_num_threads());
  return std::max<int64_t>(1, std::min({threads, count, max_workers}));
}

// Calls task(i, state) for i in [0, count) on torch's intra-op threads, dealing i out
// round-robin to round_robin_workers(count, max_workers) workers so that tasks of uneven size
// share out evenly. Each worker w makes its own state = make_state(w) (scratch buffers, a gradient graph)
// and reuses it for all of its tasks; a worker's tasks run one after another on one thread.
// NOTE: each task runs on one core: a nested at::parallel_for runs inline, and with several
// workers OpenBLAS is held to one thread meanwhile. The cores are used by running independent
// GEMMs or double backwards side by side, each into its own rows.
template <typename MakeState, typename Task>
void parallel_round_robin(int64_t count, const MakeState& make_state, const Task& task,
                          int64_t max_workers = INT64_MAX) {
  const int64_t workers = round_robin_workers(count, max_workers);
  std::optional<SingleThreadedBlas> blas_on_one_thread;  // one worker: OpenBLAS keeps its threads
  if (workers > 1) blas_on_one_thread.emplace();
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t worker = begin; worker < end; ++worker) {
      auto state = make_state(worker);
      for (int64_t i = worker; i < count; i += workers) task(i, state);
    }
  });
}

}  // namespace blockopt::hessian::detail
