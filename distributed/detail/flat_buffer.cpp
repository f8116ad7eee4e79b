#include <blockopt/distributed/detail/flat_buffer.h>

namespace blockopt::distributed::detail {

torch::Tensor flat_buffer(const std::vector<torch::Tensor>& tensors, const std::vector<size_t>& members) {
  int64_t numel = 0;
  for (auto i : members) numel += tensors[i].numel();
  return torch::empty({numel}, tensors[members.front()].options().requires_grad(false));
}

void broadcast_through(ProcessGroup& group, const std::vector<torch::Tensor>& tensors,
                       const std::vector<size_t>& members, const torch::Tensor& flat, int root) {
  const bool sender = group.rank() == root;
  int64_t offset = 0;
  if (sender) {
    for (auto i : members) {
      flat.narrow(0, offset, tensors[i].numel()).copy_(tensors[i].reshape(-1));
      offset += tensors[i].numel();
    }
  }
  group.broadcast(flat, root);
  if (sender) return;
  offset = 0;
  for (auto i : members) {
    auto target = tensors[i];  // shares the tensor's storage
    target.copy_(flat.narrow(0, offset, target.numel()).view(target.sizes()));
    offset += target.numel();
  }
}

}  // namespace blockopt::distributed::detail
