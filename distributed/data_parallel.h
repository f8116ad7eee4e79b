#pragma once
// Data parallelism as PyTorch's DDP does it on CPU: every rank holds the whole model, computes
// gradients on its rows of each global batch, and the gradients are averaged by allreduce
// over flattened buckets, so every rank takes the same optimizer step.
#include <blockopt/distributed/process_group.h>

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <vector>

namespace blockopt::distributed {

class DataParallel {
 public:
  // `bucket_bytes`: a bucket is closed once it holds at least this many bytes of gradients
  // (DDP's bucket_cap_mb); buckets take the parameters in reverse order, one dtype each.
  // `overlap`: start each bucket's allreduce during the backward pass, as soon as autograd
  // has produced all its gradients (DDP's hooks), instead of after it.
  DataParallel(std::shared_ptr<ProcessGroup> group, std::vector<torch::Tensor> parameters,
               int64_t bucket_bytes, bool overlap = false);
  ~DataParallel();  // removes the gradient hooks
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const { return group_->rank(); }
  int world_size() const { return group_->size(); }
  ProcessGroup& group() { return *group_; }
  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }

  // This rank's rows of a global batch, [rank n / W, (rank + 1) n / W) along dim 0. Throws
  // naming both sizes when W does not divide n.
  torch::Tensor local_rows(const torch::Tensor& global) const;

  // Call before the last backward pass of a step (with overlap; otherwise it does nothing):
  // that pass then copies each gradient, summed with what earlier micro-batches left in
  // .grad(), into its bucket and starts full buckets.
  void prepare_last_backward();
  // Every parameter's gradient becomes its mean over the ranks. The buckets not started
  // during backward are started before the first is waited on. Throws naming the parameter
  // whose gradient is undefined.
  void average_gradients();

  // The sum over the ranks of each value (float64).
  std::vector<double> sum(const std::vector<double>& values);

  // Rank 0's parameter values on every rank (DDP does this when it wraps a model).
  void broadcast_parameters();

  // Buckets whose allreduce the last step started during backward (overlap).
  int64_t buckets_started_in_backward() const { return started_in_backward_; }

  // Wall time spent in average_gradients (copies and allreduce), and how many calls.
  double gradient_sync_seconds() const { return sync_seconds_; }
  int64_t gradient_syncs() const { return syncs_; }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into parameters_
    std::vector<int64_t> offsets;  // of each member in `flat`
    torch::Tensor flat;            // (sum of the members' numel), reused every step
    size_t filled = 0;             // members copied in this step
    std::optional<ProcessGroup::Pending> pending;  // its allreduce, once started
  };
  // Copies parameter i's gradient `grad` into its bucket; starts the bucket when it is full.
  void fill(size_t i, const torch::Tensor& grad);

  std::shared_ptr<ProcessGroup> group_;
  std::vector<torch::Tensor> parameters_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> slot_;  // parameter -> (bucket, member)
  std::vector<bool> filled_;                      // parameter copied in this step
  bool overlap_ = false;
  bool armed_ = false;  // the current backward pass fills the buckets
  int64_t started_in_backward_ = 0;
  std::vector<std::pair<size_t, unsigned>> hooks_;  // (parameter, hook handle)
  double sync_seconds_ = 0.0;
  int64_t syncs_ = 0;
};

}  // namespace blockopt::distributed
