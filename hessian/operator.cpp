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

torch::Tensor activation(const torch::Tensor& z, models::Activation act) {
  switch (act) {
    case models::Activation::ReLU: return torch::relu(z);
    case models::Activation::Tanh: return torch::tanh(z);
    case models::Activation::GELU: return torch::gelu(z);
  }
  throw std::invalid_argument("unknown activation");
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

torch::Tensor mlp_forward(const std::vector<torch::Tensor>& weights, models::Activation act,
                          const torch::Tensor& x) {
  auto out = x;
  for (size_t l = 0; l < weights.size(); ++l) {
    out = torch::matmul(out, weights[l].t());
    if (l + 1 < weights.size()) out = activation(out, act);
  }
  return out;
}

namespace {

// out[(a,b),(a',b')] = sum_n M[n,a,a'] h[n,b] g[n,b']: M (N, A, A'), h (N, B), g (N, B')
// -> (A*B, A'*B'); one (B, N) x (N, A'B') matmul per a.
torch::Tensor kron_contract(const torch::Tensor& m, const torch::Tensor& h, const torch::Tensor& g) {
  const int64_t n = m.size(0), a_count = m.size(1), a2 = m.size(2);
  auto out = torch::empty({a_count, h.size(1), a2 * g.size(1)}, h.options());
  const auto ht = h.t();  // (B, N)
  for (int64_t a = 0; a < a_count; ++a) {
    auto z = (m.select(1, a).unsqueeze(2) * g.unsqueeze(1)).reshape({n, -1});  // (N, A'B')
    auto slot = out[a];
    torch::mm_out(slot, ht, z);
  }
  return out.reshape({a_count * h.size(1), a2 * g.size(1)});
}

// Block-diagonal version, M[n,a,a'] = delta_aa' w[n,a]: returns (A, B, B') blocks
// sum_n w[n,a] h[n,b] g[n,b'].
torch::Tensor diag_contract(const torch::Tensor& w, const torch::Tensor& h, const torch::Tensor& g) {
  auto weighted = w.t().unsqueeze(2) * h.unsqueeze(0);  // (A, N, B)
  return torch::matmul(weighted.transpose(1, 2), g);    // (A, B, B')
}

// Adds the (A, B, B) blocks on the diagonal of the (A*B, A*B) view `target`.
void add_block_diagonal(torch::Tensor target, const torch::Tensor& blocks) {
  const int64_t a = blocks.size(0), b = blocks.size(1);
  target.view({a, b, a, b}).diagonal(0, 0, 2).add_(blocks.permute({1, 2, 0}));
}

}  // namespace

bool closed_form_supported(size_t layers) { return layers == 1 || layers == 2; }

torch::Tensor mlp_hessian_closed_form(const std::vector<torch::Tensor>& weights_in,
                                      models::Activation act, const torch::Tensor& x_in,
                                      const torch::Tensor& y, models::Loss loss) {
  TORCH_CHECK(closed_form_supported(weights_in.size()),
              "closed-form Hessian: only linear and one-hidden-layer MLPs");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> w;
  for (const auto& t : weights_in) w.push_back(t.detach());
  const auto x = x_in.to(w.front().dtype());                 // (N, d)
  const int64_t n = x.size(0);
  const int64_t classes = w.back().size(0);
  const auto dn = static_cast<double>(n);

  // The last layer's input h (N, m) and, with a hidden layer, sigma' and sigma'' at z (N, m).
  torch::Tensor h = x, s1, s2;
  if (w.size() == 2) {
    torch::AutoGradMode enable(true);
    auto z = torch::matmul(x, w[0].t()).requires_grad_(true);
    auto a = activation(z, act);
    s1 = torch::autograd::grad({a.sum()}, {z}, {}, true, true)[0];
    auto second = s1.requires_grad()
                      ? torch::autograd::grad({s1.sum()}, {z}, {}, false, false, true)[0]
                      : torch::Tensor();
    s2 = second.defined() ? second.detach() : torch::zeros_like(z);
    s1 = s1.detach();
    h = a.detach();
  }
  const auto logits = torch::matmul(h, w.back().t());  // (N, C)
  const auto one_hot = torch::one_hot(y, classes).to(logits.dtype());
  torch::Tensor weight, residual, p;  // loss curvature diag (N, C), dL/df (N, C), softmax (N, C)
  if (loss == models::Loss::CrossEntropy) {
    p = torch::softmax(logits, 1);
    weight = p / dn;
    residual = (p - one_hot) / dn;
  } else {
    weight = torch::full_like(logits, 2.0 / (dn * classes));
    residual = 2.0 * (logits - one_hot) / (dn * classes);
  }

  const int64_t p_last = w.back().numel();
  const int64_t p_first = w.size() == 2 ? w[0].numel() : 0;
  auto hess = torch::zeros({p_first + p_last, p_first + p_last}, logits.options());
  auto h22 = hess.slice(0, p_first).slice(1, p_first);
  // Last layer (f linear in W): sum_n A_n (x) h h^T, diagonal part of A_n = diag(w_n) - ...
  add_block_diagonal(h22, diag_contract(weight, h, h));
  std::vector<torch::Tensor> v_parts;  // CE: A_n = diag(p_n)/N - p_n p_n^T/N, v_n = J_n^T p_n
  if (w.size() == 2) {
    const auto& w2 = w[1];  // (C, m)
    const int64_t m = w2.size(1);
    auto h11 = hess.slice(0, 0, p_first).slice(1, 0, p_first);
    auto h12 = hess.slice(0, 0, p_first).slice(1, p_first);
    // Jacobian of f wrt z: B[n,c,a] = W2[c,a] s1[n,a].
    // G12: M[n,a,c] = B[n,c,a] w[n,c].
    auto m12 = s1.unsqueeze(2) * w2.t().unsqueeze(0) * weight.unsqueeze(1);  // (N, m, C)
    h12.add_(kron_contract(m12, x, h));
    // G11: M[n,a,a'] = s1_a s1_a' sum_c W2[c,a] w[n,c] W2[c,a'].
    auto w2w2 = (w2.unsqueeze(2) * w2.unsqueeze(1)).reshape({classes, m * m});  // (C, m*m)
    auto m11 = torch::mm(weight, w2w2).view({n, m, m}) * s1.unsqueeze(2) * s1.unsqueeze(1);
    h11.add_(kron_contract(m11, x, x));
    // Residual sum_nc r_nc d^2 f_nc:
    // R12[(a,b),(c,j)] = delta_ja sum_n r[n,c] s1[n,a] x[n,b].
    auto sx = (s1.unsqueeze(2) * x.unsqueeze(1)).reshape({n, -1});      // (N, m*d)
    auto t12 = torch::mm(sx.t(), residual).view({m, x.size(1), classes, 1});  // (m, d, C, 1)
    auto eye = torch::eye(m, logits.options()).view({m, 1, 1, m});
    h12.add_((t12 * eye).reshape({p_first, p_last}));
    // R11[(a,b),(a,b')] = sum_n (r_n W2)_a s2[n,a] x[n,b] x[n,b'].
    add_block_diagonal(h11, diag_contract(torch::mm(residual, w2) * s2, x, x));
    if (loss == models::Loss::CrossEntropy) {
      v_parts.push_back((s1 * torch::mm(p, w2)).unsqueeze(2) * x.unsqueeze(1));  // (N, m, d)
    }
    hess.slice(0, p_first).slice(1, 0, p_first).copy_(h12.t());
  }
  if (loss == models::Loss::CrossEntropy) {
    v_parts.push_back(p.unsqueeze(2) * h.unsqueeze(1));  // (N, C, m)
    std::vector<torch::Tensor> flat;
    for (auto& part : v_parts) flat.push_back(part.reshape({n, -1}));
    auto v = torch::cat(flat, 1) / std::sqrt(dn);  // (N, P)
    hess.addmm_(v.t(), v, 1.0, -1.0);
  }
  return hess;
}

}  // namespace blockopt::hessian
