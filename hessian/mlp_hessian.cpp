#include <blockopt/hessian/mlp_hessian.h>
#include <blockopt/hessian/detail/cpu_cache.h>
#include <blockopt/hessian/detail/mlp_parts.h>
#include <blockopt/hessian/detail/parallel.h>

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace blockopt::hessian {

namespace {

using detail::activation;

// The layers of a parameter list in models::MLP order: W_l and b_l (undefined without bias).
struct Layers {
  std::vector<torch::Tensor> weights, biases;
};

Layers split_layers(const std::vector<torch::Tensor>& params, bool bias) {
  const size_t stride = bias ? 2 : 1;
  TORCH_CHECK(!params.empty() && params.size() % stride == 0, "MLP: ", params.size(),
              " parameter tensors do not make layers of weight", bias ? " and bias" : "");
  Layers layers;
  for (size_t i = 0; i < params.size(); i += stride) {
    const auto& w = params[i];
    TORCH_CHECK(w.dim() == 2, "MLP: parameter ", i, " is not a weight matrix (shape ", w.sizes(),
                ")");
    layers.weights.push_back(w);
    layers.biases.push_back(bias ? params[i + 1] : torch::Tensor());
    if (bias) {
      TORCH_CHECK(params[i + 1].dim() == 1 && params[i + 1].size(0) == w.size(0), "MLP: parameter ",
                  i + 1, " is not the bias of weight ", i, " (shape ", params[i + 1].sizes(), ")");
    }
  }
  return layers;
}

torch::Tensor linear(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& b) {
  return b.defined() ? torch::addmm(b, h, w.t()) : torch::matmul(h, w.t());
}

// Fills out[(a,b),(a',b')] = sum_n u[n,b] (M[n,a,a'] v[n,b'] + delta[n,a'] F[n,b',a]), the
// second term only when F is defined: u (N, B), M (N, A, A'), v (N, B'), delta (N, A'),
// F (N, B', A), out (A*B, A'*B'), a view into the Hessian. One (B, N) x (N, A'B') GEMM per a.
// With `symmetric` (u is v, M symmetric, no F) only the columns a' >= a are contracted and the
// rest is mirrored.
void fill_pair_block(torch::Tensor out, const torch::Tensor& u, const torch::Tensor& m,
                     const torch::Tensor& v, const torch::Tensor& delta, const torch::Tensor& f,
                     bool symmetric) {
  const int64_t n = u.size(0), a_count = m.size(1), a2 = m.size(2);
  const int64_t b = u.size(1), b2 = v.size(1);
  const auto ut = u.t();  // (B, N)
  const auto fill_rows_of = [&](int64_t a, torch::Tensor& buffer) {
    const int64_t first = symmetric ? a : 0;
    auto z = buffer.slice(0, 0, n * (a2 - first) * b2).view({n, a2 - first, b2});  // Z_a
    torch::mul_out(z, m.select(1, a).slice(1, first).unsqueeze(2), v.unsqueeze(1));
    if (f.defined()) z.addcmul_(delta.unsqueeze(2), f.select(2, a).unsqueeze(1));
    auto rows = out.slice(0, a * b, (a + 1) * b).slice(1, first * b2);
    torch::mm_out(rows, ut, z.view({n, -1}));
  };
  const auto scratch = [&](int64_t) { return torch::empty({n * a2 * b2}, u.options()); };
  detail::parallel_round_robin(a_count, scratch, fill_rows_of);
  if (symmetric) {
    for (int64_t a = 0; a + 1 < a_count; ++a) {
      out.slice(0, (a + 1) * b).slice(1, a * b, (a + 1) * b)
          .copy_(out.slice(0, a * b, (a + 1) * b).slice(1, (a + 1) * b).t());
    }
  }
}

// Fills out (C*B, C*B') with sum_n w[n,c] u[n,b] v[n,b'] on its block diagonal and zeros
// elsewhere: the last layer's curvature diag(w) needs no (N, C, C) tensor.
void fill_diagonal_block(torch::Tensor out, const torch::Tensor& w, const torch::Tensor& u,
                         const torch::Tensor& v) {
  const int64_t c = w.size(1), b = u.size(1), b2 = v.size(1);
  auto weighted = w.t().unsqueeze(2) * u.unsqueeze(0);       // (C, N, B)
  auto blocks = torch::matmul(weighted.transpose(1, 2), v);  // (C, B, B')
  out.zero_();
  for (int64_t k = 0; k < c; ++k) {
    out.slice(0, k * b, (k + 1) * b).slice(1, k * b2, (k + 1) * b2).copy_(blocks[k]);
  }
}

// out += alpha V^T V for a symmetric `out` (P, P) and V (N, P): only the column chunks i <= j
// are multiplied (about half the GEMM work), then the upper triangle of chunks is mirrored.
void add_symmetric_gram(torch::Tensor out, const torch::Tensor& v, double alpha) {
  const int64_t p = v.size(1), chunk = 512;
  const auto vt = v.t();  // (P, N)
  const auto add_chunk_rows = [&](int64_t k, int) {
    const int64_t i = k * chunk, i_end = std::min(p, i + chunk);
    auto rows = out.slice(0, i, i_end).slice(1, i);
    rows.addmm_(vt.slice(0, i, i_end), v.slice(1, i), 1.0, alpha);
  };
  const auto no_state = [](int64_t) { return 0; };
  detail::parallel_round_robin((p + chunk - 1) / chunk, no_state, add_chunk_rows);
  for (int64_t i = chunk; i < p; i += chunk) {  // lower triangle of chunks from the upper
    const int64_t i_end = std::min(p, i + chunk);
    out.slice(0, i, i_end).slice(1, 0, i).copy_(out.slice(0, 0, i).slice(1, i, i_end).t());
  }
}

// An uninitialised (P, P) tensor for the Hessian.
// NOTE: on Linux its pages are advised to be transparent huge pages before the first write:
// each first write to a fresh 4 KiB page is a page fault, which cost a fifth of the mlp4
// benchmark's time (docs/hessian.md). The advice may be ignored; nothing else changes.
torch::Tensor empty_square(int64_t size, const torch::TensorOptions& options) {
  auto out = torch::empty({size, size}, options);
#ifdef __linux__
  if (out.is_cpu() && out.nbytes() > 0) {
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const auto end = begin + out.nbytes();
    begin = (begin + page - 1) / page * page;  // whole pages inside the buffer
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#endif
  return out;
}

}  // namespace

torch::Tensor mlp_forward(const std::vector<torch::Tensor>& params, models::Activation act,
                          const torch::Tensor& x, bool bias) {
  const auto layers = split_layers(params, bias);
  auto out = x;
  for (size_t l = 0; l < layers.weights.size(); ++l) {
    out = linear(out, layers.weights[l], layers.biases[l]);
    if (l + 1 < layers.weights.size()) out = activation(out, act);
  }
  return out;
}

torch::Tensor mlp_hessian_closed_form(const std::vector<torch::Tensor>& params,
                                      models::Activation act, const torch::Tensor& x_in,
                                      const torch::Tensor& y, models::Loss loss, bool bias) {
  torch::NoGradGuard no_grad;
  detail::ScopedCpuCache cache;  // the per-layer-pair temporaries reuse each other's memory
  std::vector<torch::Tensor> detached;
  for (const auto& t : params) detached.push_back(t.detach());
  const auto layers = split_layers(detached, bias);
  const auto& w = layers.weights;
  const size_t depth = w.size();  // L; layer l of the maths is index l - 1 here
  const auto x = x_in.to(w.front().dtype()).reshape({x_in.size(0), -1});  // (N, d)
  const int64_t n = x.size(0);
  TORCH_CHECK(x.size(1) == w.front().size(1), "closed-form Hessian: inputs have ", x.size(1),
              " features, W_1 expects ", w.front().size(1));

  // Forward: inputs h[l] of layer l (h[0] = x) and sigma', sigma'' at each hidden z (N, m_l).
  std::vector<torch::Tensor> h{x}, s1, s2;
  torch::Tensor logits;
  for (size_t l = 0; l < depth; ++l) {
    auto z = linear(h.back(), w[l], layers.biases[l]);
    if (l + 1 == depth) {
      logits = z;  // (N, C)
      break;
    }
    auto [first, second] = detail::activation_derivatives(z, act);
    s1.push_back(first);
    s2.push_back(second);
    h.push_back(activation(z, act));
  }
  // Loss curvature d^2 loss / df^2 = diag(curv) - q q^T (q only for CE); r = d loss / df.
  const auto logit_curvature = detail::logit_curvature(logits, y, loss);
  const auto &curv = logit_curvature.curv, &q = logit_curvature.q, &r = logit_curvature.r;  // (N, C)

  // Backward: delta[l] = d loss / dz_l (N, m_l); hz[l] = d^2 loss / dz_l^2 (N, m_l, m_l) for
  // the hidden layers (the last layer's is diag(curv) - q q^T, never formed).
  std::vector<torch::Tensor> delta(depth), hz(depth);
  delta[depth - 1] = r;
  for (size_t l = depth - 1; l-- > 0;) {
    const auto& up = w[l + 1];                 // (m_{l+1}, m_l)
    const auto pulled = torch::mm(delta[l + 1], up);  // delta_{l+1} W_{l+1} (N, m_l)
    delta[l] = s1[l] * pulled;
    torch::Tensor g;  // W_{l+1}^T Hz_{l+1} W_{l+1} (N, m_l, m_l)
    if (l + 2 == depth) {
      g = torch::matmul(up.t().unsqueeze(0) * curv.unsqueeze(1), up);
      if (q.defined()) {
        const auto uq = torch::mm(q, up);  // (N, m_l)
        g -= uq.unsqueeze(2) * uq.unsqueeze(1);
      }
    } else {
      g = torch::matmul(torch::matmul(up.t(), hz[l + 1]), up);
    }
    hz[l] = s1[l].unsqueeze(2) * g * s1[l].unsqueeze(1) + torch::diag_embed(s2[l] * pulled);
  }

  // jacobian[l][k] = dz_k / dz_l (N, m_k, m_l) for k > l.
  std::vector<std::vector<torch::Tensor>> jacobian(depth, std::vector<torch::Tensor>(depth));
  for (size_t l = 0; l + 1 < depth; ++l) {
    jacobian[l][l + 1] = w[l + 1].unsqueeze(0) * s1[l].unsqueeze(1);
    for (size_t k = l + 2; k < depth; ++k) {
      jacobian[l][k] = torch::matmul(w[k], s1[k - 1].unsqueeze(2) * jacobian[l][k - 1]);
    }
  }
  // curvature[l][k] = (dz_k/dz_l)^T Hz_k (N, m_l, m_k): the Gauss-Newton-and-curvature factor
  // of each layer pair l <= k below the last layer pair (shared by its weight and bias slots).
  std::vector<std::vector<torch::Tensor>> curvature(depth, std::vector<torch::Tensor>(depth));
  for (size_t l = 0; l + 1 < depth; ++l) {
    curvature[l][l] = hz[l];
    for (size_t k = l + 1; k < depth; ++k) {
      const auto jt = jacobian[l][k].transpose(1, 2);  // (N, m_l, m_k)
      if (k + 1 < depth) {
        curvature[l][k] = torch::matmul(jt, hz[k]);
      } else {
        curvature[l][k] = jt * curv.unsqueeze(1);
        if (q.defined()) curvature[l][k] -= torch::matmul(jt, q.unsqueeze(2)) * q.unsqueeze(1);
      }
    }
  }
  // through(l, k) = dh_{k-1} / dz_l (N, m_{k-1}, m_l) for k > l: the residual term's factor.
  auto through = [&](size_t l, size_t k) -> torch::Tensor {
    if (k == l + 1) return torch::diag_embed(s1[l]);
    return s1[k - 1].unsqueeze(2) * jacobian[l][k - 1];
  };

  // Parameter slots in models::MLP order: each layer's weight (input h) and bias (input 1).
  struct Slot {
    size_t layer;
    bool weight;
    torch::Tensor input;  // (N, B)
    int64_t offset, size;
  };
  std::vector<Slot> slots;
  const auto ones = torch::ones({n, 1}, x.options());
  int64_t total = 0;
  for (size_t l = 0; l < depth; ++l) {
    slots.push_back({l, true, h[l], total, w[l].numel()});
    total += w[l].numel();
    if (bias) {
      slots.push_back({l, false, ones, total, w[l].size(0)});
      total += w[l].size(0);
    }
  }

  auto hess = empty_square(total, x.options());
  for (size_t i = 0; i < slots.size(); ++i) {
    for (size_t j = i; j < slots.size(); ++j) {
      const auto& a = slots[i];
      const auto& b = slots[j];
      auto block = hess.slice(0, a.offset, a.offset + a.size).slice(1, b.offset, b.offset + b.size);
      if (a.layer + 1 == depth) {  // both in the last layer: diag(curv) now, q q^T below
        fill_diagonal_block(block, curv, a.input, b.input);
      } else {
        const bool residual = b.weight && b.layer > a.layer;
        fill_pair_block(block, a.input, curvature[a.layer][b.layer], b.input,
                        residual ? delta[b.layer] : torch::Tensor(),
                        residual ? through(a.layer, b.layer) : torch::Tensor(), i == j);
      }
      if (j != i) {
        hess.slice(0, b.offset, b.offset + b.size).slice(1, a.offset, a.offset + a.size)
            .copy_(block.t());
      }
    }
  }
  if (q.defined()) {  // - sum_n (q_n (x) input_n)(q_n (x) input_n)^T on the last layer
    std::vector<torch::Tensor> parts;
    int64_t first = total;
    for (const auto& s : slots) {
      if (s.layer + 1 != depth) continue;
      first = std::min(first, s.offset);
      parts.push_back((q.unsqueeze(2) * s.input.unsqueeze(1)).reshape({n, -1}));
    }
    add_symmetric_gram(hess.slice(0, first).slice(1, first), torch::cat(parts, 1), -1.0);
  }
  return hess;
}

}  // namespace blockopt::hessian
