#pragma once
// Small GPT: token + learned positional embedding, pre-LN transformer blocks with explicit
// multi-head causal attention (plain matmul/softmax, so double backward works), GELU MLP,
// final LayerNorm and a linear head (optionally tied to the token embedding).
// Parameter names (used by the Adam-mini `gpt` partition and the matrix-optimizer routing):
//   wte.weight, wpe.weight, h.N.ln_1.{weight,bias}, h.N.attn.{wq,wk,wv,wo}.{weight,bias},
//   h.N.ln_2.{weight,bias}, h.N.mlp.fc.{weight,bias}, h.N.mlp.proj.{weight,bias},
//   ln_f.{weight,bias}, lm_head.weight (absent when tied). Biases only with bias(true).
#include <blockopt/models/model.h>

#include <vector>

namespace blockopt::models {

struct GPTOptions {
  TORCH_ARG(int64_t, vocab) = 256;
  TORCH_ARG(int64_t, d_model) = 128;
  TORCH_ARG(int64_t, layers) = 4;
  TORCH_ARG(int64_t, heads) = 4;
  TORCH_ARG(int64_t, context) = 128;
  // Biases in every Linear and LayerNorm (nanoGPT's `bias`).
  TORCH_ARG(bool, bias) = false;
  // lm_head shares wte.weight.
  TORCH_ARG(bool, tie_weights) = false;

 public:
};

// LayerNorm with an optional bias (torch::nn::LayerNorm has both or neither).
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, bool bias);
  torch::Tensor forward(const torch::Tensor& x);  // (..., C) -> (..., C)

  torch::Tensor weight;
  torch::Tensor bias;  // undefined without bias
};
TORCH_MODULE(LayerNorm);

// The additive causal mask (context, context): -inf above the diagonal, else 0. A registered
// buffer, so Module::to() moves it with the parameters. NOTE: a module of its own that is not
// serializable (Module::save and load skip it): the mask is a constant of `context`, and
// checkpoints keep holding the parameters only.
class CausalMaskImpl : public torch::nn::Module {
 public:
  explicit CausalMaskImpl(int64_t context);
  bool is_serializable() const override { return false; }

  torch::Tensor mask;
};
TORCH_MODULE(CausalMask);

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(const GPTOptions& o);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)

  torch::nn::Linear wq{nullptr}, wk{nullptr}, wv{nullptr}, wo{nullptr};

 private:
  int64_t heads_;
  CausalMask causal_{nullptr};
};
TORCH_MODULE(CausalSelfAttention);

// GELU MLP: proj(gelu(fc(x))), hidden width 4C.
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(const GPTOptions& o);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)

  torch::nn::Linear fc{nullptr}, proj{nullptr};
};
TORCH_MODULE(FeedForward);

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const GPTOptions& o);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)

  LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  FeedForward mlp{nullptr};
};
TORCH_MODULE(Block);

class GPT : public Model {
 public:
  explicit GPT(GPTOptions options);
  // (B, T) int64 token ids, T <= context -> (B, T, vocab) logits.
  torch::Tensor forward(const torch::Tensor& inputs) override;
  // The head's input: the final LayerNorm's output (B, T, d_model); forward is its product
  // with lm_head (or wte when tied).
  torch::Tensor head_input(const torch::Tensor& inputs);
  // Forward FLOPs per token at full context: 2 per matmul weight (blocks and head) plus
  // 4 * layers * context * d_model for the attention scores and the weighted sum.
  int64_t flops_per_item() const override;
  const GPTOptions& options() const { return options_; }

 private:
  GPTOptions options_;
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  std::vector<Block> blocks_;
  LayerNorm ln_f{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tied
};

}  // namespace blockopt::models
