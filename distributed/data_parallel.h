#pragma once
// Data parallelism as PyTorch's DDP does it on CPU: every rank holds the whole model, computes
// gradients on its rows of each global batch, and the gradients are averaged by allreduce
// over flattened buckets, so every rank takes the same optimizer step.
#include <blockopt/distributed/process_group.h>

#include <torch/torch.h>

#include <memory>
#include <vector>

namespace blockopt::distributed {

class DataParallel {
 public:
  // `bucket_bytes`: a bucket is closed once it holds at least this many bytes of gradients
  // (DDP's bucket_cap_mb); buckets take the parameters in reverse order, one dtype each.
  DataParallel(std::shared_ptr<ProcessGroup> group, std::vector<torch::Tensor> parameters,
               int64_t bucket_bytes);

  int rank() const { return group_->rank(); }
  int world_size() const { return group_->size(); }
  ProcessGroup& group() { return *group_; }
  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }

  // This rank's rows of a global batch, [rank n / W, (rank + 1) n / W) along dim 0. Throws
  // naming both sizes when W does not divide n.
  torch::Tensor local_rows(const torch::Tensor& global) const;

  // Every parameter's gradient becomes its mean over the ranks. All buckets are started
  // before the first is waited on. Throws naming the parameter whose gradient is undefined.
  void average_gradients();

  // The sum over the ranks of each value (float64).
  std::vector<double> sum(const std::vector<double>& values);

  // Rank 0's parameter values on every rank (DDP does this when it wraps a model).
  void broadcast_parameters();

  // Wall time spent in average_gradients (copies and allreduce), and how many calls.
  double gradient_sync_seconds() const { return sync_seconds_; }
  int64_t gradient_syncs() const { return syncs_; }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into parameters_
    torch::Tensor flat;           // (sum of the members' numel), reused every step
  };
  std::shared_ptr<ProcessGroup> group_;
  std::vector<torch::Tensor> parameters_;
  std::vector<Bucket> buckets_;
  double sync_seconds_ = 0.0;
  int64_t syncs_ = 0;
};

}  // namespace blockopt::distributed
