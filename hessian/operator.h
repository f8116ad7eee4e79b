#pragma once
// Hessian-vector products by double backward, and the full Hessian of small nets.
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace blockopt::hessian {

// Returns the scalar loss as a function of the parameters handed to HessianOperator.
using LossClosure = std::function<torch::Tensor()>;
// Sums a tensor over the ranks of a data-parallel job, in place (an allreduce).
using SumOverRanks = std::function<void(const torch::Tensor&)>;

// H v = d/dtheta <grad L(theta), v>. The gradient graph (create_graph) is built once in the
// constructor and reused by every product (retain_graph): 1.7x cheaper than rebuilding.
// Only torch::autograd::grad is used, so the parameters' .grad() and values are never touched.
// rows() and full_hessian() call the closure again, once per further intra-op thread (see
// rows_into): it is kept, must be a pure function of the parameters, and what it refers to
// must outlive the operator.
class HessianOperator {
 public:
  HessianOperator(const LossClosure& loss, std::vector<torch::Tensor> params);
  // Data parallel: each rank's closure is its share of the loss (the shares add up to the
  // loss, e.g. its rows' mean times their fraction of the data), and loss(), gradient(),
  // hvp() and rows() return the sums over the ranks, so every rank gets the whole loss's
  // values. Every rank must make the same calls in the same order.
  HessianOperator(const LossClosure& loss, std::vector<torch::Tensor> params,
                  SumOverRanks sum_over_ranks);

  int64_t size() const { return size_; }  // P
  const std::vector<torch::Tensor>& params() const { return params_; }
  torch::Tensor loss() const { return total_loss_; }
  torch::Tensor gradient() const;  // (P)

  // Backpropagates only from the gradient tensors where v is non-zero (autograd prunes the
  // rest), so a v supported on one block costs one block's worth of double backward.
  torch::Tensor hvp(const torch::Tensor& v);  // (P) -> (P)
  // NOTE: LibTorch's C++ autograd::grad has no is_grads_batched, so a batch of products is a loop over columns.
  torch::Tensor hvp_columns(const torch::Tensor& vs);  // (P, k) -> (P, k)

  // Offsets of each parameter tensor in the flattened vector, (T + 1) entries.
  const std::vector<int64_t>& offsets() const { return offsets_; }
  // Rows of H for the entries of parameter tensor t, restricted to the columns of `cols`
  // (parameter indices): (numel_t, sum numel of cols). One double backward per row, the rows
  // dealt out to torch's intra-op threads, each with its own gradient graph.
  // NOTE: autograd runs one node of a graph on one thread at a time (each node's apply holds
  // its mutex), so threads sharing one graph would take turns. The extra graphs come from
  // calling the closure again on the calling thread; if a call's loss differs from the first
  // (dropout, other randomness), the extra graphs are dropped and the rows run on one thread.
  // The extra graphs stay alive with the operator: one forward and gradient graph per thread.
  torch::Tensor rows(size_t t, const std::vector<size_t>& cols);
  // The same rows written into `out` (numel_t, sum numel of cols) in place.
  void rows_into(size_t t, const std::vector<size_t>& cols, torch::Tensor out);

 private:
  // The gradient graphs of `count` workers (fewer if the closure is not deterministic).
  const std::vector<std::vector<torch::Tensor>>& gradient_graphs(int64_t count);

  // Sums over the ranks when given, in place.
  void reduce(const torch::Tensor& t) const;

  LossClosure loss_fn_;
  SumOverRanks sum_over_ranks_;  // empty: one process
  torch::Tensor total_loss_;     // loss_ summed over the ranks
  std::vector<torch::Tensor> params_;
  std::vector<int64_t> offsets_;
  int64_t size_ = 0;
  torch::Tensor loss_;
  // graphs_[0] is the constructor's graph; graphs_[w] the gradients of worker w's graph.
  std::vector<std::vector<torch::Tensor>> graphs_;
  bool deterministic_ = true;  // every further call of the closure gave loss_ bit for bit
};

// Full P x P Hessian by one double backward per row (rows_into for each parameter tensor,
// backpropagating from that tensor's gradient only), written into one preallocated H and
// symmetrised. `subset` (parameter indices, default all) restricts rows and columns to those
// tensors, in the given order.
torch::Tensor full_hessian(HessianOperator& op, std::vector<size_t> subset = {});

}  // namespace blockopt::hessian
