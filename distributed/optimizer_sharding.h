#pragma once
// ZeRO-1-style sharding of an optimizer over the ranks of a data-parallel job, as Keller
// Jordan's distributed Muon does it: every parameter has one owner rank, chosen to balance the
// optimizer's work; a rank steps only the parameters it owns (so it computes only their
// orthogonalisations or inverse roots, and holds only their state), then each owner's new
// values reach every rank by broadcast. Works with any optimizer that skips parameters
// without a gradient (every blockopt optimizer and torch::optim's).
#include <blockopt/distributed/process_group.h>

#include <torch/torch.h>

#include <memory>
#include <vector>

namespace blockopt::distributed {

class OptimizerSharding {
 public:
  // The parameters are the optimizer's, group after group; every rank must pass the same
  // optimizer layout.
  OptimizerSharding(std::shared_ptr<ProcessGroup> group, torch::optim::Optimizer& optimizer);

  // The owner of the optimizer's i-th parameter (group after group).
  int owner(size_t parameter) const { return owners_.at(parameter); }
  // The work the balance counts for one parameter: numel x min(rows, cols) for a matrix (the
  // cost of a Newton-Schulz or inverse-root step), numel for a vector.
  static double work(const torch::Tensor& parameter);

  // optimizer.step() on this rank's parameters (the others' gradients are hidden meanwhile),
  // then every parameter's new value from its owner.
  void step();

  // Collective. Afterwards rank 0 holds every parameter's optimizer state (for a checkpoint),
  // the other ranks their own.
  void gather_state_on_rank0();
  // Drops the state of the parameters this rank does not own (after a checkpoint or a load).
  void release_unowned_state();

  // Wall time of step() so far: the optimizer on this rank's parameters, and the broadcasts.
  double update_seconds() const { return update_seconds_; }
  double broadcast_seconds() const { return broadcast_seconds_; }

 private:
  struct OwnerBuffer {
    int owner = 0;
    std::vector<size_t> members;  // indices into params_
    torch::Tensor flat;           // their values, flattened, reused every step
  };
  std::shared_ptr<ProcessGroup> group_;
  torch::optim::Optimizer& optimizer_;
  std::vector<torch::Tensor> params_;
  std::vector<int> owners_;
  std::vector<OwnerBuffer> buffers_;  // one per (owner, dtype)
  double update_seconds_ = 0.0;
  double broadcast_seconds_ = 0.0;
};

}  // namespace blockopt::distributed
