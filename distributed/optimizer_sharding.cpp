#include <blockopt/distributed/optimizer_sharding.h>
#include <blockopt/distributed/detail/flat_buffer.h>
#include <blockopt/optim/detail/compat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <sstream>
#include <utility>

namespace blockopt::distributed {

double OptimizerSharding::work(const torch::Tensor& parameter) {
  const auto n = static_cast<double>(parameter.numel());
  if (parameter.dim() < 2) return n;
  const auto rows = static_cast<double>(parameter.size(0));
  return n * std::min(rows, n / std::max(rows, 1.0));
}

OptimizerSharding::OptimizerSharding(std::shared_ptr<ProcessGroup> group,
                                     torch::optim::Optimizer& optimizer)
    : group_(std::move(group)), optimizer_(optimizer) {
  for (const auto& g : optimizer_.param_groups()) {
    for (const auto& p : g.params()) params_.push_back(p);
  }
  // Longest processing time first: the largest work goes to the least loaded rank (ties: the
  // lower index, the lower rank), the same on every rank.
  std::vector<size_t> order(params_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return work(params_[a]) > work(params_[b]); });
  std::vector<double> load(group_->size(), 0.0);
  owners_.assign(params_.size(), 0);
  for (auto i : order) {
    const int rank = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owners_[i] = rank;
    load[rank] += work(params_[i]);
  }
  for (int rank = 0; rank < group_->size(); ++rank) {
    std::vector<OwnerBuffer> by_dtype;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (owners_[i] != rank) continue;
      auto it = std::find_if(by_dtype.begin(), by_dtype.end(), [&](const OwnerBuffer& b) {
        return params_[b.members.front()].dtype() == params_[i].dtype();
      });
      if (it == by_dtype.end()) it = by_dtype.insert(by_dtype.end(), OwnerBuffer{rank, {}, {}});
      it->members.push_back(i);
    }
    for (auto& buffer : by_dtype) {
      buffer.flat = detail::flat_buffer(params_, buffer.members);
      buffers_.push_back(std::move(buffer));
    }
  }
}

void OptimizerSharding::step() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> hidden(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (owners_[i] != group_->rank()) hidden[i] = std::exchange(params_[i].mutable_grad(), torch::Tensor());
  }
  const auto start = std::chrono::steady_clock::now();
  optimizer_.step();
  const auto updated = std::chrono::steady_clock::now();
  update_seconds_ += std::chrono::duration<double>(updated - start).count();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (hidden[i].defined()) params_[i].mutable_grad() = std::move(hidden[i]);
  }
  for (auto& buffer : buffers_) {
    detail::broadcast_through(*group_, params_, buffer.members, buffer.flat, buffer.owner);
  }
  broadcast_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - updated).count();
}

namespace {

std::string serialized_state(torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  return bytes.str();
}

}  // namespace

void OptimizerSharding::gather_state_on_rank0() {
  const int rank = group_->rank();
  // NOTE: the states travel as the optimizer's own archives (save() on the owner, load() on
  // rank 0), so any optimizer's state goes through, with its checks.
  const std::string mine = rank == 0 ? std::string() : serialized_state(optimizer_);
  auto lengths = torch::zeros({group_->size()}, torch::kLong);
  lengths[rank] = static_cast<int64_t>(mine.size());
  group_->allreduce_sum(lengths);

  auto& state = optimizer_.state();
  using Entries = std::remove_reference_t<decltype(state)>;
  Entries merged;
  if (rank == 0) {
    for (auto& entry : state) merged.insert(std::make_pair(entry.first, std::move(entry.second)));
    state.clear();
  }
  for (int from = 1; from < group_->size(); ++from) {
    auto bytes = torch::empty({lengths[from].item<int64_t>()}, torch::kUInt8);
    if (rank == from) std::memcpy(bytes.data_ptr(), mine.data(), mine.size());
    group_->broadcast(bytes, from);
    if (rank != 0) continue;
    std::istringstream in(std::string(static_cast<const char*>(bytes.data_ptr()), bytes.numel()));
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    optimizer_.load(archive);
    for (size_t i = 0; i < params_.size(); ++i) {
      if (owners_[i] != from) continue;
      auto it = state.find(optim::state_key(params_[i]));
      if (it != state.end()) merged.insert(std::make_pair(it->first, std::move(it->second)));
    }
    state.clear();
  }
  if (rank == 0) state = std::move(merged);
}

void OptimizerSharding::release_unowned_state() {
  auto& state = optimizer_.state();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (owners_[i] != group_->rank()) state.erase(optim::state_key(params_[i]));
  }
}

}  // namespace blockopt::distributed
