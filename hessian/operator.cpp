#include <blockopt/hessian/operator.h>

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

}  // namespace

HessianOperator::HessianOperator(const LossClosure& loss, std::vector<torch::Tensor> params)
    : params_(std::move(params)) {
  offsets_.push_back(0);
  for (const auto& p : params_) {
    TORCH_CHECK(p.requires_grad(), "HessianOperator: every parameter must require grad");
    offsets_.push_back(offsets_.back() + p.numel());
  }
  size_ = offsets_.back();
  torch::AutoGradMode enable(true);
  loss_ = loss();
  grads_ = torch::autograd::grad({loss_}, params_, {}, /*retain_graph=*/true,
                                 /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t t = 0; t < grads_.size(); ++t) {
    if (!grads_[t].defined()) grads_[t] = torch::zeros_like(params_[t]);
  }
}

torch::Tensor HessianOperator::gradient() const {
  std::vector<torch::Tensor> flat;
  for (const auto& g : grads_) flat.push_back(g.detach().reshape(-1));
  return torch::cat(flat);
}

torch::Tensor HessianOperator::hvp(const torch::Tensor& v) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == size_, "hvp: v must be (", size_, ")");
  const auto parts = split_like(v.to(params_.front().dtype()), params_, offsets_);
  std::vector<torch::Tensor> outputs, grad_outputs;
  for (size_t t = 0; t < grads_.size(); ++t) {
    if (!grads_[t].requires_grad() || !parts[t].any().item<bool>()) continue;
    outputs.push_back(grads_[t]);
    grad_outputs.push_back(parts[t]);
  }
  if (outputs.empty()) return torch::zeros({size_}, params_.front().options());
  torch::AutoGradMode enable(true);
  auto columns = torch::autograd::grad(outputs, params_, grad_outputs, /*retain_graph=*/true,
                                       /*create_graph=*/false, /*allow_unused=*/true);
  std::vector<torch::Tensor> flat;
  for (size_t t = 0; t < columns.size(); ++t) {
    flat.push_back(columns[t].defined() ? columns[t].reshape(-1)
                                        : torch::zeros({params_[t].numel()}, params_[t].options()));
  }
  return torch::cat(flat);
}

torch::Tensor HessianOperator::hvp_columns(const torch::Tensor& vs) {
  std::vector<torch::Tensor> columns;
  for (int64_t k = 0; k < vs.size(1); ++k) columns.push_back(hvp(vs.select(1, k)));
  return torch::stack(columns, 1);
}

torch::Tensor HessianOperator::rows(size_t t, const std::vector<size_t>& cols) {
  std::vector<torch::Tensor> inputs;
  int64_t width = 0;
  for (auto c : cols) {
    inputs.push_back(params_.at(c));
    width += params_[c].numel();
  }
  const int64_t n = params_.at(t).numel();
  auto out = torch::zeros({n, width}, params_[t].options().requires_grad(false));
  if (!grads_[t].requires_grad()) return out;
  torch::AutoGradMode enable(true);
  auto unit = torch::zeros({n}, out.options());
  for (int64_t k = 0; k < n; ++k) {
    unit.zero_();
    unit[k] = 1.0;
    auto row = torch::autograd::grad({grads_[t]}, inputs, {unit.view_as(grads_[t])},
                                     /*retain_graph=*/true, /*create_graph=*/false,
                                     /*allow_unused=*/true);
    int64_t offset = 0;
    for (size_t i = 0; i < row.size(); ++i) {
      const int64_t m = inputs[i].numel();
      if (row[i].defined()) out[k].slice(0, offset, offset + m).copy_(row[i].reshape(-1));
      offset += m;
    }
  }
  return out;
}

torch::Tensor full_hessian(HessianOperator& op, std::vector<size_t> subset) {
  if (subset.empty()) {
    for (size_t t = 0; t < op.params().size(); ++t) subset.push_back(t);
  }
  std::vector<torch::Tensor> blocks;
  for (auto t : subset) blocks.push_back(op.rows(t, subset));
  auto h = torch::cat(blocks, 0);
  return (h + h.t()) / 2;  // symmetrise
}

}  // namespace blockopt::hessian
