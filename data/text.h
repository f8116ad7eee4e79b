#pragma once
// Language-model data: a token stream split into training and validation parts. Training
// batches are random contiguous windows (seeded, resumable); evaluation uses fixed,
// non-overlapping windows from the start of the validation part.
#include <blockopt/data/data.h>

#include <string>

namespace blockopt::data {

// Byte-level tokenizer: every byte is a token (vocab 256). (n) int64.
torch::Tensor byte_tokens(const std::string& text);

// A nanoGPT-style token file: raw little-endian uint16 ids. Throws if the file is missing,
// has an odd size, or holds an id >= vocab (tokenizer and model vocab disagree). (n) int64.
torch::Tensor load_token_file(const std::string& path, int64_t vocab);

struct TextDataOptions {
  TORCH_ARG(int64_t, vocab) = 256;
  TORCH_ARG(int64_t, context) = 128;      // T
  TORCH_ARG(int64_t, batch) = 16;         // B windows per training batch
  TORCH_ARG(int64_t, eval_windows) = 64;  // validation windows of length T
  TORCH_ARG(uint64_t, seed) = 0;

 public:
};

class TextData : public DataSource {
 public:
  // train, val: (n) int64 token ids, each longer than context.
  TextData(torch::Tensor train, torch::Tensor val, TextDataOptions options);
  Batch next_batch() override;  // inputs, targets (B, T); targets are inputs shifted by one
  std::vector<Batch> eval_batches() const override;
  int64_t items_per_batch() const override { return options_.batch() * options_.context(); }
  std::string item_name() const override { return "tokens"; }
  int64_t input_dim() const override { return options_.context(); }
  int64_t num_classes() const override { return options_.vocab(); }
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  // Windows starting at `starts` (N): inputs (N, T), targets (N, T).
  Batch windows(const torch::Tensor& tokens, const torch::Tensor& starts) const;

  TextDataOptions options_;
  torch::Tensor train_;
  torch::Tensor val_;
  at::Generator generator_;
};

}  // namespace blockopt::data
