#pragma once
// Fashion-MNIST (Debian dataset-fashion-mnist): 60000 training and 10000 test images,
// 28x28 grey, 10 classes, read from the gzip IDX files with zlib.
#include <blockopt/data/data.h>

#include <string>

namespace blockopt::data {

// An IDX file (gzip): magic 0x0000080<dims> (unsigned byte data), big-endian sizes, bytes.
// Throws on a missing file (naming the apt command), a bad magic or a size mismatch.
// Returns a uint8 tensor with the file's shape.
torch::Tensor read_idx_gz(const std::string& path, int64_t expected_dims);

struct FashionMNISTOptions {
  TORCH_ARG(std::string, dir) = "/usr/share/datasets/fashion-mnist";
  TORCH_ARG(int64_t, batch) = 128;
  // Train on the first train_samples training images (0 = all 60000), e.g. the seed paper's
  // N = 128 setting.
  TORCH_ARG(int64_t, train_samples) = 0;
  // "test": evaluate (and probe the Hessian) on the test images; "train": on the training
  // images used, so the probe sees the training loss.
  TORCH_ARG(std::string, eval_split) = "test";
  // Evaluation on the first eval_samples test images (0 = all 10000), in batches of 1000.
  TORCH_ARG(int64_t, eval_samples) = 0;
  TORCH_ARG(uint64_t, seed) = 0;

 public:
};

class FashionMNIST : public DataSource {
 public:
  explicit FashionMNIST(FashionMNISTOptions options);
  Batch next_batch() override;  // inputs (B, 1, 28, 28) float, standardised; targets (B)
  std::vector<Batch> eval_batches() const override;
  int64_t items_per_batch() const override { return batch_; }
  std::string item_name() const override { return "samples"; }
  int64_t input_dim() const override { return 28 * 28; }
  int64_t num_classes() const override { return 10; }
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  torch::Tensor train_x_, train_y_, test_x_, test_y_;
  int64_t batch_;
  EpochSampler sampler_;
};

}  // namespace blockopt::data
