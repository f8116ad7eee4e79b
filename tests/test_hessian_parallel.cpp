// The full-Hessian row loop on several threads: one gradient graph per thread, the fallback
// for a closure that is not deterministic, the scoped CPU cache and the OpenBLAS thread guard.
#include <blockopt/hessian/detail/blas_threads.h>
#include <blockopt/hessian/detail/cpu_cache.h>
#include <blockopt/hessian/mlp_hessian.h>
#include <blockopt/hessian/operator.h>

#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>

namespace bh = blockopt::hessian;
namespace bm = blockopt::models;

namespace {

// Sets torch's intra-op thread count for a scope.
class IntraOpThreads {
 public:
  explicit IntraOpThreads(int threads) : previous_(at::get_num_threads()) {
    at::set_num_threads(threads);
  }
  ~IntraOpThreads() { at::set_num_threads(previous_); }

 private:
  int previous_;
};

struct TwoLayerNet {
  std::vector<torch::Tensor> weights;
  torch::Tensor x, y;
  torch::Tensor loss() const {
    return bm::compute_loss(bh::mlp_forward(weights, bm::Activation::Tanh, x), y,
                            bm::Loss::CrossEntropy);
  }
};

TwoLayerNet make_net(int64_t d, int64_t hidden, int64_t classes, int64_t n) {
  torch::manual_seed(11);
  TwoLayerNet net;
  net.weights = {torch::randn({hidden, d}, torch::kDouble).requires_grad_(true),
                 torch::randn({classes, hidden}, torch::kDouble).requires_grad_(true)};
  net.x = torch::randn({n, d}, torch::kDouble);
  net.y = torch::randint(classes, {n}, torch::kLong);
  return net;
}

}  // namespace

TEST(HessianRowLoop, EveryThreadCountGivesTheOneThreadHessian) {
  const auto net = make_net(6, 5, 4, 40);
  const auto closed_form = bh::mlp_hessian_closed_form(net.weights, bm::Activation::Tanh, net.x,
                                                       net.y, bm::Loss::CrossEntropy);
  for (int threads : {1, 2, 3}) {
    IntraOpThreads scope(threads);
    int calls = 0;
    bh::HessianOperator op(
        [&] {
          ++calls;
          return net.loss();
        },
        net.weights);
    const auto h = bh::full_hessian(op);
    EXPECT_TRUE(torch::allclose(h, closed_form, 1e-12, 1e-12)) << threads << " threads";
    // One graph per worker: the constructor's and one more call per further thread.
    EXPECT_EQ(calls, threads) << threads << " threads";
  }
}

TEST(HessianRowLoop, ClosureWithAChangingLossRunsOnOneGraph) {
  const auto net = make_net(6, 5, 4, 40);
  IntraOpThreads scope(2);
  int calls = 0;
  // The offset changes the loss on every call but not its Hessian: the operator must notice
  // the change, keep its first graph only and still give the exact Hessian.
  bh::HessianOperator op(
      [&] {
        ++calls;
        return net.loss() + static_cast<double>(calls);
      },
      net.weights);
  const auto h = bh::full_hessian(op);
  const auto closed_form = bh::mlp_hessian_closed_form(net.weights, bm::Activation::Tanh, net.x,
                                                       net.y, bm::Loss::CrossEntropy);
  EXPECT_TRUE(torch::allclose(h, closed_form, 1e-12, 1e-12));
  const int calls_after_first = calls;
  EXPECT_EQ(calls_after_first, 2);  // the constructor and the one call that differed
  bh::full_hessian(op);
  EXPECT_EQ(calls, calls_after_first);  // no further attempts
}

TEST(HessianCpuCache, ReusesFreedMemoryAndRestoresTheAllocator) {
  auto* const before = c10::GetCPUAllocator();
  torch::Tensor kept;
  {
    bh::detail::ScopedCpuCache cache;
    EXPECT_NE(c10::GetCPUAllocator(), before);
    const auto start = bh::detail::cpu_cache_counts();
    const void* first_data = nullptr;
    {
      auto t = torch::empty({1000}, torch::kFloat);
      first_data = t.data_ptr();
    }
    auto again = torch::empty({500}, torch::kDouble);  // the same 4000 bytes: the same block
    EXPECT_EQ(again.data_ptr(), first_data);
    auto other = torch::ones({999}, torch::kFloat);  // another size: a fresh block
    EXPECT_NE(other.data_ptr(), first_data);
    const auto end = bh::detail::cpu_cache_counts();
    EXPECT_EQ(end.fresh - start.fresh, 2);
    EXPECT_EQ(end.reused - start.reused, 1);
    kept = other;  // outlives the scope: freed to the system later
  }
  EXPECT_EQ(c10::GetCPUAllocator(), before);
  EXPECT_EQ(kept.sum().item<float>(), 999.0f);
  kept = torch::Tensor();
}

TEST(HessianCpuCache, RowLoopAllocatesNothingPerRow) {
  const auto net = make_net(30, 20, 5, 64);  // W_1 has 600 rows
  IntraOpThreads scope(1);                   // one worker: a deterministic allocation order
  bh::HessianOperator op([&] { return net.loss(); }, net.weights);
  const int64_t rows = net.weights[0].numel();
  bh::detail::ScopedCpuCache outer;  // keeps the cache warm across the two calls
  const auto start = bh::detail::cpu_cache_counts();
  const auto first = op.rows(0, {0, 1});
  const auto warm = bh::detail::cpu_cache_counts();
  // The first call takes from the system only what its first rows need.
  EXPECT_LT(warm.fresh - start.fresh, rows / 10);
  EXPECT_GT(warm.reused - start.reused, rows);
  const auto second = op.rows(0, {0, 1});
  const auto end = bh::detail::cpu_cache_counts();
  EXPECT_EQ(end.fresh - warm.fresh, 1);  // the result only
  EXPECT_TRUE(torch::equal(first, second));
}

TEST(HessianBlasThreads, SingleThreadedScopeRestoresTheCount) {
  const int original = bh::detail::openblas_threads();
  if (original == 0) GTEST_SKIP() << "the BLAS in use is not OpenBLAS";
  ASSERT_TRUE(bh::detail::set_openblas_threads(2));
  {
    bh::detail::SingleThreadedBlas outer;
    EXPECT_EQ(bh::detail::openblas_threads(), 1);
    {
      bh::detail::SingleThreadedBlas inner;
      EXPECT_EQ(bh::detail::openblas_threads(), 1);
    }
    EXPECT_EQ(bh::detail::openblas_threads(), 1);  // the outer scope is still open
  }
  EXPECT_EQ(bh::detail::openblas_threads(), 2);
  bh::detail::set_openblas_threads(original);
}
