#pragma once
// Builds any blockopt optimizer from a config node whose keys are those of the testdata
// manifests and spec/optimizers.md (name, lr, betas, ..., fallback: {...}).
#include <blockopt/experiments/config.h>
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace blockopt::optim {

// `layout` (optional) receives which parameter went where: Adam-mini's blocks per tensor
// (with a "warning:" line for a matrix left as one whole-tensor block) or the matrix
// optimizers' routing (matrix or fallback); empty for AdamW and Adam.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const NamedParameters& named_params,
                                                        experiments::ConfigNode config,
                                                        std::string* layout = nullptr);

// The config names of the optimizers with an options table (`adam` shares `adamw`'s).
std::vector<std::string> documented_optimizers();

// The markdown table "option | meaning | default" of an optimizer's config keys, generated from
// its Options field list; docs/optimizers.md holds exactly these tables (a test checks).
std::string options_markdown(const std::string& optimizer);

}  // namespace blockopt::optim
