#pragma once
// The optimizer benchmarks' parameters: 25.2M float32 values in 24 tensors of 512x2048, with
// fixed random gradients, named as hidden matrices so the matrix optimizers route every
// tensor to their matrix rule.
#include <blockopt/optim/partition.h>

#include <torch/torch.h>

#include <string>

namespace blockopt::bench {

constexpr int64_t kTensors = 24, kRows = 512, kCols = 2048;

inline optim::NamedParameters make_optimizer_bench_params() {
  torch::manual_seed(0);
  optim::NamedParameters named;
  for (int64_t i = 0; i < kTensors; ++i) {
    auto p = (torch::randn({kRows, kCols}) * 0.02).set_requires_grad(true);
    p.mutable_grad() = torch::randn({kRows, kCols}) * 1e-3;
    named.insert("h." + std::to_string(i) + ".mlp.fc.weight", p);
  }
  return named;
}

}  // namespace blockopt::bench
