#pragma once
// The paper's synthetic task: inputs x ~ N(0, I_d), labels uniform over C classes,
// independent of x (random labels). Evaluation is on the training set itself.
#include <blockopt/data/data.h>

namespace blockopt::data {

struct GaussianDataOptions {
  TORCH_ARG(int64_t, samples) = 1000;  // N
  TORCH_ARG(int64_t, dim) = 20;        // d
  TORCH_ARG(int64_t, classes) = 10;    // C
  TORCH_ARG(int64_t, batch) = 0;       // 0 = full batch
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(torch::Dtype, dtype) = torch::kFloat32;

 public:
};

class GaussianData : public DataSource {
 public:
  explicit GaussianData(GaussianDataOptions options);
  Batch next_batch() override;
  std::vector<Batch> eval_batches() const override;
  int64_t items_per_batch() const override { return sampler_batch_; }
  std::string item_name() const override { return "samples"; }
  int64_t input_dim() const override { return x_.size(1); }
  int64_t num_classes() const override { return classes_; }
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  const torch::Tensor& inputs() const { return x_; }   // (N, d)
  const torch::Tensor& labels() const { return y_; }   // (N)

 private:
  torch::Tensor x_;
  torch::Tensor y_;
  int64_t classes_;
  int64_t sampler_batch_;
  EpochSampler sampler_;
};

}  // namespace blockopt::data
