#pragma once
// Pieces every blockopt optimizer shares: option validation, state accounting, and
// save/load that round-trips per-parameter state *and* param-group options.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::optim {

// Base of every blockopt ParamState: lists its tensors so state size can be reported.
class StateTensors {
 public:
  virtual ~StateTensors() = default;
  virtual std::vector<torch::Tensor> state_tensors() const = 0;
};

// Bytes held in optimizer state (blockopt states and torch::optim::Adam/AdamW states).
int64_t state_bytes(const torch::optim::Optimizer& optimizer);

// The loss of an optimizer step's closure, evaluated with grad enabled; undefined when there
// is no closure. Every step() calls it before its NoGradGuard.
torch::Tensor evaluate_closure(const torch::optim::Optimizer::LossClosure& closure);

// Throws std::invalid_argument("<optimizer>: <what>") when `ok` is false.
void require(bool ok, const std::string& optimizer, const std::string& what);
void check_lr(double lr, const std::string& optimizer);
void check_beta(double beta, const std::string& name, const std::string& optimizer);
void check_non_negative(double value, const std::string& name, const std::string& optimizer);

// Throws when a gradient holds NaN/Inf: an update from it would silently corrupt the
// parameter and the optimizer state.
void check_finite_grad(const torch::Tensor& grad, const std::string& optimizer);

// NOTE: LibTorch 1.13's torch::optim::serialize() reads the saved group options but never
// assigns them, so a loaded optimizer keeps the options it was constructed with. These
// helpers save exactly what torch saves and, on load, also install the saved options.
template <typename ParamState, typename Options>
void save_state_and_options(torch::serialize::OutputArchive& archive,
                            const torch::optim::Optimizer& optimizer) {
  torch::optim::serialize<ParamState, Options>(archive, optimizer);
}

template <typename ParamState, typename Options>
void load_state_and_options(torch::serialize::InputArchive& archive,
                            torch::optim::Optimizer& optimizer) {
  torch::optim::serialize<ParamState, Options>(archive, optimizer);
  torch::serialize::InputArchive groups_archive;
  archive.read("param_groups", groups_archive);
  std::vector<std::pair<std::vector<std::string>, std::unique_ptr<torch::optim::OptimizerOptions>>>
      saved_groups;
  torch::optim::detail::serialize<Options>(groups_archive, saved_groups);
  auto& groups = optimizer.param_groups();
  TORCH_CHECK(saved_groups.size() == groups.size(), "optimizer load: checkpoint has ",
              saved_groups.size(), " param groups, optimizer has ", groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    groups[i].set_options(std::move(saved_groups[i].second));
  }
}

}  // namespace blockopt::optim
