#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/detail/cpu_cache.h>
#include <blockopt/hessian/detail/parallel.h>

#include <cmath>
#include <stdexcept>

namespace blockopt::hessian {

namespace {

std::vector<torch::Tensor> split_like(const torch::Tensor& flat,
                                      const std::vector<torch::Tensor>& like,
                                      const std::vector<int64_t>& offsets) {
  std::vector<torch::Tensor> parts;
  parts.reserve(like.size());
  for (size_t t = 0; t < like.size(); ++t) {
    parts.push_back(flat.slice(0, offsets[t], offsets[t + 1]).view_as(like[t]));
  }
  return parts;
}

// The gradients of `loss` with their graph (create_graph); zeros where a parameter is unused.
std::vector<torch::Tensor> gradient_with_graph(const torch::Tensor& loss,
                                               const std::vector<torch::Tensor>& params) {
  auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true,
                                     /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t t = 0; t < grads.size(); ++t) {
    if (!grads[t].defined()) grads[t] = torch::zeros_like(params[t]);
  }
  return grads;
}

}  // namespace

HessianOperator::HessianOperator(const LossClosure& loss, std::vector<torch::Tensor> params)
    : HessianOperator(loss, std::move(params), SumOverRanks{}) {}

HessianOperator::HessianOperator(const LossClosure& loss, std::vector<torch::Tensor> params,
                                 SumOverRanks sum_over_ranks)
    : loss_fn_(loss), sum_over_ranks_(std::move(sum_over_ranks)), params_(std::move(params)) {
  offsets_.push_back(0);
  for (const auto& p : params_) {
    TORCH_CHECK(p.requires_grad(), "HessianOperator: every parameter must require grad");
    offsets_.push_back(offsets_.back() + p.numel());
  }
  size_ = offsets_.back();
  torch::AutoGradMode enable(true);
  loss_ = loss_fn_();
  total_loss_ = loss_.detach().clone();
  reduce(total_loss_);
  graphs_.push_back(gradient_with_graph(loss_, params_));
}

void HessianOperator::reduce(const torch::Tensor& t) const {
  if (sum_over_ranks_) sum_over_ranks_(t);
}

const std::vector<std::vector<torch::Tensor>>& HessianOperator::gradient_graphs(int64_t count) {
  torch::AutoGradMode enable(true);
  while (deterministic_ && static_cast<int64_t>(graphs_.size()) < count) {
    auto loss = loss_fn_();
    if (!torch::equal(loss, loss_)) {
      deterministic_ = false;
      graphs_.resize(1);
      TORCH_WARN("HessianOperator: another call of the loss closure gave ", loss.item<double>(),
                 " instead of ", loss_.item<double>(),
                 " (dropout or other randomness?); Hessian rows run on one thread");
      break;
    }
    graphs_.push_back(gradient_with_graph(loss, params_));
  }
  return graphs_;
}

torch::Tensor HessianOperator::gradient() const {
  std::vector<torch::Tensor> flat;
  for (const auto& g : graphs_.front()) flat.push_back(g.detach().reshape(-1));
  auto gradient = torch::cat(flat);
  reduce(gradient);
  return gradient;
}

torch::Tensor HessianOperator::hvp(const torch::Tensor& v) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == size_, "hvp: v must be (", size_, ")");
  const auto parts = split_like(v.to(params_.front().dtype()), params_, offsets_);
  const auto& grads = graphs_.front();
  std::vector<torch::Tensor> outputs, grad_outputs;
  for (size_t t = 0; t < grads.size(); ++t) {
    if (!grads[t].requires_grad() || !parts[t].any().item<bool>()) continue;
    outputs.push_back(grads[t]);
    grad_outputs.push_back(parts[t]);
  }
  if (outputs.empty()) return torch::zeros({size_}, params_.front().options());  // on every rank
  torch::AutoGradMode enable(true);
  auto columns = torch::autograd::grad(outputs, params_, grad_outputs, /*retain_graph=*/true,
                                       /*create_graph=*/false, /*allow_unused=*/true);
  std::vector<torch::Tensor> flat;
  for (size_t t = 0; t < columns.size(); ++t) {
    flat.push_back(columns[t].defined() ? columns[t].reshape(-1)
                                        : torch::zeros({params_[t].numel()}, params_[t].options()));
  }
  auto product = torch::cat(flat);
  reduce(product);
  return product;
}

torch::Tensor HessianOperator::hvp_columns(const torch::Tensor& vs) {
  std::vector<torch::Tensor> columns;
  for (int64_t k = 0; k < vs.size(1); ++k) columns.push_back(hvp(vs.select(1, k)));
  return torch::stack(columns, 1);
}

torch::Tensor HessianOperator::rows(size_t t, const std::vector<size_t>& cols) {
  int64_t width = 0;
  for (auto c : cols) width += params_.at(c).numel();
  auto out = torch::empty({params_.at(t).numel(), width},
                          params_[t].options().requires_grad(false));
  rows_into(t, cols, out);
  return out;
}

void HessianOperator::rows_into(size_t t, const std::vector<size_t>& cols, torch::Tensor out) {
  std::vector<torch::Tensor> inputs;
  int64_t width = 0;
  for (auto c : cols) {
    inputs.push_back(params_.at(c));
    width += params_[c].numel();
  }
  const int64_t n = params_.at(t).numel();
  TORCH_CHECK(out.dim() == 2 && out.size(0) == n && out.size(1) == width,
              "HessianOperator::rows_into: out must be (", n, ", ", width, "), got ", out.sizes());
  // The same on every rank (the graphs have the same structure), so no rank skips the sum.
  if (!graphs_.front()[t].requires_grad()) {  // the loss is at most linear in parameter t
    out.zero_();
    return;
  }
  // Row k: the double backward of grad_t with the unit vector e_k, written into out[k] in
  // place. Each worker has its own graph and unit vector (reset after each row).
  struct Worker {
    torch::Tensor grad, unit;  // grad_t in the worker's graph; (numel_t) zeros
  };
  detail::ScopedCpuCache cache;  // each row's buffers reuse the previous row's
  const auto& graphs = gradient_graphs(detail::round_robin_workers(n));
  const auto make_worker = [&](int64_t w) {
    return Worker{graphs.at(static_cast<size_t>(w))[t], torch::zeros({n}, out.options())};
  };
  const auto fill_row = [&](int64_t k, Worker& worker) {
    torch::AutoGradMode enable(true);  // grad mode is per thread
    auto entry = worker.unit.select(0, k);
    entry.fill_(1);
    auto row = torch::autograd::grad({worker.grad}, inputs, {worker.unit.view_as(worker.grad)},
                                     /*retain_graph=*/true, /*create_graph=*/false,
                                     /*allow_unused=*/true);
    entry.fill_(0);
    auto out_row = out.select(0, k);
    int64_t offset = 0;
    for (size_t i = 0; i < row.size(); ++i) {
      auto piece = out_row.slice(0, offset, offset + inputs[i].numel());
      if (row[i].defined()) {
        piece.copy_(row[i].reshape(-1));
      } else {
        piece.zero_();  // parameter i does not reach grad_t
      }
      offset += inputs[i].numel();
    }
  };
  // One worker per graph: a single graph (non-deterministic closure) runs on one thread.
  detail::parallel_round_robin(n, make_worker, fill_row, static_cast<int64_t>(graphs.size()));
  reduce(out);
}

torch::Tensor full_hessian(HessianOperator& op, std::vector<size_t> subset) {
  if (subset.empty()) {
    for (size_t t = 0; t < op.params().size(); ++t) subset.push_back(t);
  }
  int64_t width = 0;
  for (auto t : subset) width += op.params().at(t).numel();
  auto h = torch::empty({width, width}, op.params().front().options().requires_grad(false));
  int64_t row = 0;
  for (auto t : subset) {
    const int64_t n = op.params()[t].numel();
    op.rows_into(t, subset, h.slice(0, row, row + n));
    row += n;
  }
  return h.add_(h.t().contiguous()).mul_(0.5);  // symmetrise
}

}  // namespace blockopt::hessian
