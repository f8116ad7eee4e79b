#include <blockopt/distributed/data_parallel.h>

#include <chrono>
#include <stdexcept>
#include <string>

namespace blockopt::distributed {

DataParallel::DataParallel(std::shared_ptr<ProcessGroup> group,
                           std::vector<torch::Tensor> parameters, int64_t bucket_bytes)
    : group_(std::move(group)), parameters_(std::move(parameters)) {
  if (bucket_bytes <= 0) throw std::invalid_argument("bucket_bytes must be > 0");
  // NOTE: reverse order, as DDP: backward produces the last layers' gradients first.
  Bucket open;
  int64_t open_bytes = 0;
  auto close = [&] {
    if (open.members.empty()) return;
    int64_t numel = 0;
    for (auto i : open.members) numel += parameters_[i].numel();
    open.flat = torch::empty({numel}, parameters_[open.members.front()].options());
    buckets_.push_back(std::move(open));
    open = Bucket{};
    open_bytes = 0;
  };
  for (size_t k = parameters_.size(); k-- > 0;) {
    const auto& p = parameters_[k];
    if (!open.members.empty() && parameters_[open.members.front()].dtype() != p.dtype()) close();
    open.members.push_back(k);
    open_bytes += p.numel() * static_cast<int64_t>(p.element_size());
    if (open_bytes >= bucket_bytes) close();
  }
  close();
}

torch::Tensor DataParallel::local_rows(const torch::Tensor& global) const {
  const int64_t n = global.size(0);
  const int64_t w = world_size();
  if (n % w != 0) {
    throw std::invalid_argument("a global batch of " + std::to_string(n) +
                                " rows does not split evenly over " + std::to_string(w) +
                                " ranks: make the batch size a multiple of the number of ranks");
  }
  return global.narrow(0, rank() * (n / w), n / w);
}

void DataParallel::average_gradients() {
  const auto start = std::chrono::steady_clock::now();
  std::vector<ProcessGroup::Pending> pending;
  pending.reserve(buckets_.size());
  for (auto& bucket : buckets_) {
    int64_t offset = 0;
    for (auto i : bucket.members) {
      const auto& grad = parameters_[i].grad();
      if (!grad.defined()) {
        throw std::runtime_error("rank " + std::to_string(rank()) + ": parameter " +
                                 std::to_string(i) + " has no gradient; data parallel training "
                                 "needs every parameter to take part in the loss");
      }
      bucket.flat.narrow(0, offset, grad.numel()).copy_(grad.reshape(-1));
      offset += grad.numel();
    }
    pending.push_back(group_->start_allreduce_sum(bucket.flat));
  }
  const double inverse = 1.0 / world_size();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    pending[b].wait();
    auto& bucket = buckets_[b];
    bucket.flat.mul_(inverse);  // sum -> mean (exact for a power-of-two world)
    int64_t offset = 0;
    for (auto i : bucket.members) {
      auto grad = parameters_[i].mutable_grad();
      grad.copy_(bucket.flat.narrow(0, offset, grad.numel()).view(grad.sizes()));
      offset += grad.numel();
    }
  }
  sync_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++syncs_;
}

std::vector<double> DataParallel::sum(const std::vector<double>& values) {
  auto t = torch::tensor(values, torch::kDouble);
  group_->allreduce_sum(t);
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + values.size());
}

void DataParallel::broadcast_parameters() {
  torch::NoGradGuard no_grad;
  // NOTE: one collective per bucket, through the gradient buckets' buffers, rather than one
  // per parameter.
  for (auto& bucket : buckets_) {
    int64_t offset = 0;
    for (auto i : bucket.members) {
      bucket.flat.narrow(0, offset, parameters_[i].numel()).copy_(parameters_[i].reshape(-1));
      offset += parameters_[i].numel();
    }
    group_->broadcast(bucket.flat, 0);
    offset = 0;
    for (auto i : bucket.members) {
      auto& p = parameters_[i];
      p.copy_(bucket.flat.narrow(0, offset, p.numel()).view(p.sizes()));
      offset += p.numel();
    }
  }
}

}  // namespace blockopt::distributed
