#include <blockopt/hessian/mlp_block_norms.h>
#include <blockopt/hessian/detail/mlp_parts.h>
#include <blockopt/hessian/detail/parallel.h>

#include <stdexcept>
#include <string>

namespace blockopt::hessian {

namespace {

using detail::LogitCurvature;

// u_c^T K v_c for every column c of U, V (N, k), with K (N, N): the column sums of U o (K V).
torch::Tensor quadratic_forms(const torch::Tensor& k, const torch::Tensor& u,
                              const torch::Tensor& v) {
  return (u * torch::mm(k, v)).sum(0);
}

// Squared norms of the blocks of the last layer W (C, m) with inputs h (N, m), into out (C, C):
//   H_ij = sum_n (curv_ni delta_ij - q_ni q_nj) h_n h_n^T,
//   ||H_ij||^2 = a^T K a, K = (h h^T) o (h h^T), a = curv_i - q_i o q_i (i = j), q_i o q_j (i != j).
// `out` starts at zero: without q (MSE) the off-diagonal blocks are.
void last_layer_blocks(torch::Tensor out, const torch::Tensor& k, const LogitCurvature& c) {
  const auto diagonal = c.q.defined() ? c.curv - c.q * c.q : c.curv;
  out.diagonal().copy_(quadratic_forms(k, diagonal, diagonal));
  if (!c.q.defined()) return;
  const int64_t n = c.q.size(0), classes = c.q.size(1);
  // Row i, columns j > i: (q_i o q_j)^T K (q_i o q_j) = q_j^T (K o q_i q_i^T) q_j.
  const auto scratch = [&](int64_t) { return torch::empty({n, n}, c.q.options()); };
  detail::parallel_round_robin(classes - 1, scratch, [&](int64_t i, torch::Tensor& weighted) {
    const auto qi = c.q.select(1, i);
    torch::mul_out(weighted, k, qi.unsqueeze(1));
    weighted.mul_(qi.unsqueeze(0));
    const auto rest = c.q.slice(1, i + 1);  // (N, C - i - 1)
    const auto values = quadratic_forms(weighted, rest, rest);
    out.select(0, i).slice(0, i + 1).copy_(values);
    out.select(1, i).slice(0, i + 1).copy_(values);
  });
}

// Squared norms of the blocks of row k of W_1 (m, d) against the rows l >= k of W_1 and every
// row of W_2 (C, m), into out[k] (first m columns: W_1, the rest: W_2) and the mirrored column. With
// u = x W_1^T, h = sigma(u), s1 = sigma'(u), s2 = sigma''(u), f = h W_2^T:
//   W_1 rows k, l:  H_kl = sum_n hz_nkl x_n x_n^T with the hidden curvature
//     hz_n = S_n W_2^T (diag(curv_n) - q_n q_n^T) W_2 S_n + diag(s2_n o (r_n W_2)), S_n = diag(s1_n),
//     ||H_kl||^2 = hz_kl^T (G_x o G_x) hz_kl;
//   W_1 row k, W_2 row i:  H_ki = sum_n x_n (alpha_n h_n + beta_n e_k)^T with
//     alpha_n = s1_nk (W_2[i,k] curv_ni - (q_n W_2)_k q_ni), beta_n = s1_nk r_ni,
//     ||H_ki||^2 = alpha^T (G_x o G_h) alpha + (2 h_k o alpha + beta)^T G_x beta,
// G_x = x x^T, G_h = h h^T.
struct HiddenLayer {
  torch::Tensor w2, s1, s2, h;    // (C, m), (N, m) x3
  torch::Tensor pulled, q_w2;     // r W_2, q W_2 (N, m); q_w2 undefined for MSE
  torch::Tensor gram_x, gram_x2, gram_xh;  // G_x, G_x o G_x, G_x o G_h (N, N)
};

void first_layer_row(torch::Tensor out, int64_t k, const HiddenLayer& l, const LogitCurvature& c) {
  const int64_t m = l.w2.size(1);
  const auto s = l.s1.select(1, k).unsqueeze(1);  // (N, 1)
  const auto curv_w2k = c.curv * l.w2.select(1, k);  // curv_ni W_2[i,k] (N, C)
  auto hz = torch::mm(curv_w2k, l.w2);              // (N, m)
  if (c.q.defined()) hz -= l.q_w2.select(1, k).unsqueeze(1) * l.q_w2;
  hz.mul_(l.s1).mul_(s);
  hz.select(1, k).add_(l.s2.select(1, k) * l.pulled.select(1, k));
  const auto upper = hz.slice(1, k);  // rows l >= k: each pair written by one task only
  const auto first = quadratic_forms(l.gram_x2, upper, upper);  // (m - k)
  out.select(0, k).slice(0, k, m).copy_(first);
  out.select(1, k).slice(0, k, m).copy_(first);

  auto alpha = c.q.defined() ? curv_w2k - l.q_w2.select(1, k).unsqueeze(1) * c.q : curv_w2k;
  alpha = alpha * s;          // (N, C)
  const auto beta = c.r * s;  // (N, C)
  const auto cross = quadratic_forms(l.gram_xh, alpha, alpha) +
                     quadratic_forms(l.gram_x, 2.0 * l.h.select(1, k).unsqueeze(1) * alpha + beta, beta);
  out.select(0, k).slice(0, m).copy_(cross);
  out.select(1, k).slice(0, m).copy_(cross);
}

torch::Tensor squared_gram(const torch::Tensor& features) {
  auto gram = torch::mm(features, features.t());
  return gram.mul_(gram);
}

}  // namespace

torch::Tensor mlp_block_norms(const std::vector<torch::Tensor>& weights_in, models::Activation act,
                              const torch::Tensor& x_in, const torch::Tensor& y, models::Loss loss) {
  if (weights_in.empty() || weights_in.size() > 2) {
    throw std::invalid_argument("mlp_block_norms: " + std::to_string(weights_in.size()) +
                                " weight matrices; a bias-free MLP with at most one hidden layer "
                                "has 1 or 2");
  }
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> w;
  for (size_t i = 0; i < weights_in.size(); ++i) {
    TORCH_CHECK_VALUE(weights_in[i].dim() == 2, "mlp_block_norms: weight ", i,
                      " is not a matrix (shape ", weights_in[i].sizes(), ")");
    w.push_back(weights_in[i].detach());
  }
  const auto x = x_in.detach().reshape({x_in.size(0), -1}).to(w.front().dtype());  // (N, d)
  TORCH_CHECK_VALUE(x.size(1) == w.front().size(1), "mlp_block_norms: inputs have ", x.size(1),
                    " features, weight 0 expects ", w.front().size(1));
  if (w.size() == 2) {
    TORCH_CHECK_VALUE(w[1].size(1) == w[0].size(0), "mlp_block_norms: weight 1 expects ",
                      w[1].size(1), " inputs, weight 0 has ", w[0].size(0), " rows");
  }
  const int64_t classes = w.back().size(0);
  TORCH_CHECK_VALUE(y.dim() == 1 && y.size(0) == x.size(0), "mlp_block_norms: targets of shape ",
                    y.sizes(), " for ", x.size(0), " samples");
  TORCH_CHECK_VALUE(y.numel() == 0 || (y.min().item<int64_t>() >= 0 &&
                                       y.max().item<int64_t>() < classes),
                    "mlp_block_norms: a target lies outside [0, ", classes, ")");

  if (w.size() == 1) {
    const auto c = detail::logit_curvature(torch::mm(x, w[0].t()), y, loss);
    auto out = torch::zeros({classes, classes}, x.options());
    last_layer_blocks(out, squared_gram(x), c);
    return out.clamp_min_(0.0).sqrt_();  // NOTE: clamps round-off below 0 of a sum of squares
  }

  HiddenLayer l;
  l.w2 = w[1];
  const auto u = torch::mm(x, w[0].t());  // (N, m)
  std::tie(l.s1, l.s2) = detail::activation_derivatives(u, act);
  l.h = detail::activation(u, act);
  const auto c = detail::logit_curvature(torch::mm(l.h, l.w2.t()), y, loss);
  l.pulled = torch::mm(c.r, l.w2);
  if (c.q.defined()) l.q_w2 = torch::mm(c.q, l.w2);
  const int64_t hidden = w[0].size(0);
  auto out = torch::zeros({hidden + classes, hidden + classes}, x.options());
  {
    const auto gram_h = torch::mm(l.h, l.h.t());
    l.gram_x = torch::mm(x, x.t());
    l.gram_x2 = l.gram_x * l.gram_x;
    l.gram_xh = l.gram_x * gram_h;
    last_layer_blocks(out.slice(0, hidden).slice(1, hidden), gram_h * gram_h, c);
  }
  const auto no_state = [](int64_t) { return 0; };
  detail::parallel_round_robin(hidden, no_state,
                               [&](int64_t k, int) { first_layer_row(out, k, l, c); });
  return out.clamp_min_(0.0).sqrt_();  // NOTE: clamps round-off below 0 of a sum of squares
}

double RowBlockSums::ratio() const {
  return (total - diagonal) / (static_cast<double>(blocks - 1) * diagonal);
}

RowBlockSums last_layer_row_block_sums(const torch::Tensor& features_in, const torch::Tensor& logits_in,
                                       const torch::Tensor& targets, models::Loss loss) {
  torch::NoGradGuard no_grad;
  const auto logits = logits_in.detach().reshape({-1, logits_in.size(-1)});  // (N, C)
  const auto features = features_in.detach().reshape({-1, features_in.size(-1)}).to(logits.dtype());  // (N, m)
  const auto y = targets.reshape({-1});
  TORCH_CHECK_VALUE(features.size(0) == logits.size(0) && y.size(0) == logits.size(0),
                    "last_layer_row_block_sums: ", features.size(0), " feature rows, ", logits.size(0),
                    " logit rows and ", y.size(0), " targets");
  TORCH_CHECK_VALUE(logits.size(1) >= 2, "last_layer_row_block_sums: needs 2 or more classes");
  const auto c = detail::logit_curvature(logits, y, loss);
  const auto k = squared_gram(features);  // (N, N)
  RowBlockSums out;
  out.blocks = logits.size(1);
  if (!c.q.defined()) {  // MSE: diagonal curvature, no off-diagonal blocks
    out.total = out.diagonal = (k * torch::mm(c.curv, c.curv.t())).sum().item<double>();
    return out;
  }
  const auto qq = torch::mm(c.q, c.q.t());  // (N, N)
  const auto a = c.curv - c.q * c.q;        // (N, C)
  out.total = (k * (torch::mm(c.curv, c.curv.t()) - 2.0 * torch::mm(c.curv, (c.q * c.q).t()) + qq * qq))
                  .sum()
                  .item<double>();
  out.diagonal = (k * torch::mm(a, a.t())).sum().item<double>();
  return out;
}

}  // namespace blockopt::hessian
