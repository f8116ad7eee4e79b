#include <blockopt/models/gpt.h>

#include <cmath>
#include <limits>

namespace blockopt::models {

namespace {

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias, double std) {
  torch::nn::Linear layer(torch::nn::LinearOptions(in, out).bias(bias));
  torch::NoGradGuard no_grad;
  layer->weight.normal_(0.0, std);
  if (bias) layer->bias.zero_();
  return layer;
}

// nanoGPT's init: N(0, 0.02) everywhere; residual projections scaled by 1/sqrt(2 layers).
constexpr double kInitStd = 0.02;
double residual_std(const GPTOptions& o) {
  return kInitStd / std::sqrt(2.0 * static_cast<double>(o.layers()));
}

}  // namespace

LayerNormImpl::LayerNormImpl(int64_t dim, bool bias) {
  weight = register_parameter("weight", torch::ones({dim}));
  if (bias) this->bias = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {weight.size(0)}, weight, bias, 1e-5);
}

CausalMaskImpl::CausalMaskImpl(int64_t context) {
  mask = register_buffer(
      "mask", torch::full({context, context}, -std::numeric_limits<double>::infinity()).triu(1));
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const GPTOptions& o) : heads_(o.heads()) {
  const auto c = o.d_model();
  wq = register_module("wq", make_linear(c, c, o.bias(), kInitStd));
  wk = register_module("wk", make_linear(c, c, o.bias(), kInitStd));
  wv = register_module("wv", make_linear(c, c, o.bias(), kInitStd));
  wo = register_module("wo", make_linear(c, c, o.bias(), residual_std(o)));
  causal_ = register_module("causal", CausalMask(o.context()));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  const auto b = x.size(0), t = x.size(1), c = x.size(2);
  const auto d = c / heads_;
  // NOTE: q, k, v from one GEMM with the stacked weights, and the scale and causal mask
  // folded into one baddbmm: the same maths as three Linears + matmul / sqrt(D) + masked_fill
  // (tests/python/gpt_reference.py), with fewer passes over (B, H, T, T).
  auto weight = torch::cat({wq->weight, wk->weight, wv->weight});  // (3C, C)
  auto bias = wq->bias.defined() ? torch::cat({wq->bias, wk->bias, wv->bias}) : torch::Tensor();
  auto qkv = torch::linear(x, weight, bias)
                 .view({b, t, 3, heads_, d})
                 .permute({2, 0, 3, 1, 4})
                 .contiguous()
                 .view({3, b * heads_, t, d});  // (3, B*H, T, D)
  auto q = qkv[0], k = qkv[1], v = qkv[2];
  // softmax(q k^T / sqrt(D) + mask) v, mask -inf above the diagonal
  auto mask = causal_->mask.slice(0, 0, t).slice(1, 0, t).to(x.scalar_type());  // (T, T)
  auto scores = torch::baddbmm(mask, q, k.transpose(1, 2), 1.0,
                               1.0 / std::sqrt(static_cast<double>(d)));  // (B*H, T, T)
  auto y = torch::bmm(torch::softmax(scores, -1), v);                    // (B*H, T, D)
  return wo(y.view({b, heads_, t, d}).transpose(1, 2).reshape({b, t, c}));
}

FeedForwardImpl::FeedForwardImpl(const GPTOptions& o) {
  fc = register_module("fc", make_linear(o.d_model(), 4 * o.d_model(), o.bias(), kInitStd));
  proj = register_module("proj",
                         make_linear(4 * o.d_model(), o.d_model(), o.bias(), residual_std(o)));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  return proj(torch::gelu(fc(x)));
}

BlockImpl::BlockImpl(const GPTOptions& o) {
  ln_1 = register_module("ln_1", LayerNorm(o.d_model(), o.bias()));
  attn = register_module("attn", CausalSelfAttention(o));
  ln_2 = register_module("ln_2", LayerNorm(o.d_model(), o.bias()));
  mlp = register_module("mlp", FeedForward(o));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x) {
  auto h = x + attn(ln_1(x));
  return h + mlp(ln_2(h));
}

GPT::GPT(GPTOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  TORCH_CHECK(o.vocab() > 0 && o.d_model() > 0 && o.layers() > 0 && o.heads() > 0 &&
                  o.context() > 0,
              "gpt: vocab, d_model, layers, heads and context must be positive");
  TORCH_CHECK(o.d_model() % o.heads() == 0, "gpt: d_model (", o.d_model(),
              ") must be divisible by heads (", o.heads(), ")");
  wte = register_module("wte", torch::nn::Embedding(o.vocab(), o.d_model()));
  wpe = register_module("wpe", torch::nn::Embedding(o.context(), o.d_model()));
  {
    torch::NoGradGuard no_grad;
    wte->weight.normal_(0.0, kInitStd);
    wpe->weight.normal_(0.0, kInitStd);
  }
  auto h = register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.layers(); ++i) {
    blocks_.emplace_back(o);
    h->push_back(blocks_.back());
  }
  ln_f = register_module("ln_f", LayerNorm(o.d_model(), o.bias()));
  if (!o.tie_weights()) {
    lm_head = register_module("lm_head", make_linear(o.d_model(), o.vocab(), false, kInitStd));
  }
}

torch::Tensor GPT::forward(const torch::Tensor& inputs) {
  const auto x = head_input(inputs);  // (B, T, C)
  // (B, T, C) -> (B, T, vocab)
  return options_.tie_weights() ? torch::matmul(x, wte->weight.t()) : lm_head(x);
}

torch::Tensor GPT::head_input(const torch::Tensor& inputs) {
  TORCH_CHECK(inputs.dim() == 2 && inputs.scalar_type() == torch::kLong,
              "gpt: expected (B, T) int64 token ids, got ", inputs.sizes(), " ",
              inputs.scalar_type());
  const auto t = inputs.size(1);
  TORCH_CHECK(t <= options_.context(), "gpt: sequence length ", t, " exceeds context ",
              options_.context());
  const auto max_token = inputs.max().item<int64_t>();
  TORCH_CHECK(max_token < options_.vocab() && inputs.min().item<int64_t>() >= 0,
              "gpt: token id ", max_token, " out of range for the model vocab ",
              options_.vocab(), " (data tokenizer and model.vocab disagree)");
  auto x = wte(inputs) + wpe->weight.slice(0, 0, t);  // (B, T, C)
  for (auto& block : blocks_) x = block(x);
  return ln_f(x);
}

int64_t GPT::flops_per_item() const {
  const auto& o = options_;
  const auto c = o.d_model();
  const int64_t matmul_weights = o.layers() * 12 * c * c + c * o.vocab();
  return 2 * matmul_weights + 4 * o.layers() * o.context() * c;
}

}  // namespace blockopt::models
