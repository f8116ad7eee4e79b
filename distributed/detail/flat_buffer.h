#pragma once
// Several tensors sent through one flat buffer: the gradient buckets, and the broadcasts of
// parameter values (DataParallel::broadcast_parameters, OptimizerSharding::step).
#include <blockopt/distributed/process_group.h>

#include <torch/torch.h>

#include <vector>

namespace blockopt::distributed::detail {

// An uninitialised (sum of numel) buffer for tensors[members[...]] (the first one's dtype).
torch::Tensor flat_buffer(const std::vector<torch::Tensor>& tensors, const std::vector<size_t>& members);

// `root`'s values of tensors[members[...]] on every rank, through `flat` (from flat_buffer):
// packed on root, one broadcast, unpacked on the others. Call under NoGradGuard for leaves.
void broadcast_through(ProcessGroup& group, const std::vector<torch::Tensor>& tensors,
                       const std::vector<size_t>& members, const torch::Tensor& flat, int root);

}  // namespace blockopt::distributed::detail
