#include <blockopt/distributed/data_parallel.h>
#include <blockopt/distributed/detail/flat_buffer.h>

#include <chrono>
#include <stdexcept>
#include <string>

namespace blockopt::distributed {

DataParallel::DataParallel(std::shared_ptr<ProcessGroup> group,
                           std::vector<torch::Tensor> parameters, int64_t bucket_bytes,
                           bool overlap)
    : group_(std::move(group)), parameters_(std::move(parameters)), overlap_(overlap) {
  if (bucket_bytes <= 0) throw std::invalid_argument("bucket_bytes must be > 0");
  // NOTE: reverse order, as DDP: backward produces the last layers' gradients first.
  Bucket open;
  int64_t open_bytes = 0;
  auto close = [&] {
    if (open.members.empty()) return;
    open.flat = detail::flat_buffer(parameters_, open.members);
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
  slot_.resize(parameters_.size());
  filled_.assign(parameters_.size(), false);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    int64_t offset = 0;
    for (size_t m = 0; m < buckets_[b].members.size(); ++m) {
      const auto i = buckets_[b].members[m];
      slot_[i] = {b, m};
      buckets_[b].offsets.push_back(offset);
      offset += parameters_[i].numel();
    }
  }
  if (!overlap_) return;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (!parameters_[i].requires_grad()) continue;
    // NOTE: a tensor hook on a leaf sees the whole gradient of one backward pass before it is
    // added to .grad(); it runs on the thread that called backward (CPU autograd).
    const auto handle = parameters_[i].register_hook([this, i](const torch::Tensor& grad) {
      if (!armed_) return;
      const auto& accumulated = parameters_[i].grad();
      fill(i, accumulated.defined() ? accumulated + grad : grad);
    });
    hooks_.emplace_back(i, handle);
  }
}

DataParallel::~DataParallel() {
  for (const auto& [i, handle] : hooks_) parameters_[i].remove_hook(handle);
}

void DataParallel::prepare_last_backward() {
  armed_ = overlap_;
  started_in_backward_ = 0;
}

void DataParallel::fill(size_t i, const torch::Tensor& grad) {
  auto& bucket = buckets_[slot_[i].first];
  bucket.flat.narrow(0, bucket.offsets[slot_[i].second], grad.numel()).copy_(grad.reshape(-1));
  filled_[i] = true;
  if (++bucket.filled < bucket.members.size()) return;
  bucket.pending = group_->start_allreduce_sum(bucket.flat);
  if (armed_) ++started_in_backward_;
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
  armed_ = false;
  // What backward did not fill (all of it without overlap), in bucket order.
  for (auto& bucket : buckets_) {
    for (auto i : bucket.members) {
      if (filled_[i]) continue;
      const auto& grad = parameters_[i].grad();
      if (!grad.defined()) {
        throw std::runtime_error("rank " + std::to_string(rank()) + ": parameter " +
                                 std::to_string(i) + " has no gradient; data parallel training "
                                 "needs every parameter to take part in the loss");
      }
      fill(i, grad);
    }
  }
  const double inverse = 1.0 / world_size();
  for (auto& bucket : buckets_) {
    bucket.pending->wait();
    bucket.pending.reset();
    bucket.filled = 0;
    bucket.flat.mul_(inverse);  // sum -> mean (exact for a power-of-two world)
    for (size_t m = 0; m < bucket.members.size(); ++m) {
      const auto i = bucket.members[m];
      auto grad = parameters_[i].mutable_grad();
      grad.copy_(bucket.flat.narrow(0, bucket.offsets[m], grad.numel()).view(grad.sizes()));
      filled_[i] = false;
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
  for (auto& bucket : buckets_) detail::broadcast_through(*group_, parameters_, bucket.members, bucket.flat, 0);
}

}  // namespace blockopt::distributed
