#pragma once
// Data sources for the trainer: a training stream with an exact, resumable position and a
// fixed evaluation set.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::data {

struct Batch {
  torch::Tensor inputs;   // model input, e.g. (B, d) features or (B, T) token ids
  torch::Tensor targets;  // class indices, (B) or (B, T)
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  // Next training batch; advances the position.
  virtual Batch next_batch() = 0;
  // The fixed evaluation set, in batches.
  virtual std::vector<Batch> eval_batches() const = 0;
  // Items (samples or tokens) in one training batch, and their name for throughput logs.
  virtual int64_t items_per_batch() const = 0;
  virtual std::string item_name() const = 0;
  // Feature size of one input and number of target classes (vocabulary for text).
  virtual int64_t input_dim() const = 0;
  virtual int64_t num_classes() const = 0;
  // Position and RNG state, so a resumed run draws exactly the batches it would have drawn.
  virtual void save(torch::serialize::OutputArchive& archive) const = 0;
  virtual void load(torch::serialize::InputArchive& archive) = 0;
};

// Shuffled epochs over n samples with a seeded generator; resumable.
class EpochSampler {
 public:
  EpochSampler(int64_t n, int64_t batch, uint64_t seed);
  torch::Tensor next_indices();  // (batch) int64
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  int64_t n_;
  int64_t batch_;
  at::Generator generator_;
  torch::Tensor order_;  // (n) permutation of the current epoch
  int64_t cursor_ = 0;
};

}  // namespace blockopt::data
