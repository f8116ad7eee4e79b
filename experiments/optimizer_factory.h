#pragma once
// Builds any blockopt optimizer from a config node whose keys are those of the testdata
// manifests and spec/optimizers.md (name, lr, betas, ..., fallback: {...}).
#include <blockopt/experiments/config.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <memory>

namespace blockopt::optim {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const NamedParameters& named_params,
                                                        experiments::ConfigNode config);

}  // namespace blockopt::optim
