#pragma once
// Blocks of the parameter vector (plain data shared with Adam-mini) and block norms of H.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace blockopt::hessian {

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const;
};
std::vector<ParamInfo> param_infos(const std::vector<std::pair<std::string, torch::Tensor>>& named);

struct Block {
  int64_t begin = 0;  // index range [begin, end) into the flattened parameter vector
  int64_t end = 0;
  int64_t tensor = 0;  // parameter tensor the block lies in (for by-layer summaries)
  std::string name;
};

struct Partition {
  std::vector<Block> blocks;
  int64_t total = 0;  // P, the flattened parameter count

  int64_t size() const { return static_cast<int64_t>(blocks.size()); }
  // Coordinate -> block index, -1 where no block covers it: (P) int64 on `device`. Throws on
  // a range outside [0, P) and on overlapping blocks.
  torch::Tensor block_index(torch::Device device = torch::kCPU) const;

  static Partition per_tensor(const std::vector<ParamInfo>& params);
  // One block per output neuron (row of a matrix; a vector is one block).
  static Partition per_row(const std::vector<ParamInfo>& params);
  // Query/key tensors (name contains q_proj, k_proj, wq or wk) split into head_dim rows per
  // block; every other tensor is one block.
  static Partition per_head(const std::vector<ParamInfo>& params, int64_t head_dim);
  // From (numel, block size) per tensor, in order: the form Adam-mini uses.
  static Partition from_sizes(const std::vector<std::pair<int64_t, int64_t>>& numel_and_block);
  static Partition custom(std::vector<Block> blocks, int64_t total);
};

Partition make_partition(const std::string& kind, const std::vector<ParamInfo>& params,
                         int64_t head_dim = 0);

// (B, B) matrix of ||H_ij||_F from a full (P, P) H.
torch::Tensor block_norms(const torch::Tensor& hessian, const Partition& partition);

// H_bb, the Hessian restricted to block b.
torch::Tensor principal_block(const torch::Tensor& hessian, const Block& block);

// r_ij = ||H_ij||_F / ||H_ii||_F over i != j.
struct RatioSummary {
  torch::Tensor ratio;         // (B, B), diagonal 0; rows with ||H_ii|| = 0 are 0 and left out
  int64_t rows_without_ratio = 0;  // blocks with ||H_ii|| = 0 (e.g. dead ReLU units)
  double mean = 0.0;           // over i != j
  double max = 0.0;
  torch::Tensor by_tensor_pair;  // (T, T) mean r_ij over i in tensor s, j in tensor t, i != j
  // The seed paper's quantity: r_ij^2 = ||H_ij||_F^2 / ||H_ii||_F^2, averaged the same ways.
  double squared_mean = 0.0;
  torch::Tensor squared_by_tensor_pair;  // (T, T)
};
RatioSummary off_diagonal_ratios(const torch::Tensor& norms, const Partition& partition);

}  // namespace blockopt::hessian
