#include <blockopt/hessian/partition.h>

#include <algorithm>
#include <stdexcept>

namespace blockopt::hessian {

torch::Tensor block_norms(const torch::Tensor& hessian, const Partition& partition) {
  TORCH_CHECK(hessian.dim() == 2 && hessian.size(0) == partition.total &&
                  hessian.size(1) == partition.total,
              "block_norms: H must be (", partition.total, ", ", partition.total, ")");
  const int64_t nb = partition.size();
  const auto index = partition.block_index(hessian.device());  // (P), -1 outside every block
  const auto covered = index.ge(0);
  // Column sums of H^2 over each block's rows, a slab of rows at a time, so that no (P, P)
  // temporary is made (3 copies of an 800 MB H took most of a probe's time).
  constexpr int64_t kSlabRows = 256;
  auto rows = torch::zeros({nb, partition.total}, hessian.options());  // (B, P)
  for (int64_t b = 0; b < nb; ++b) {
    const auto& block = partition.blocks[static_cast<size_t>(b)];
    for (int64_t r = block.begin; r < block.end; r += kSlabRows) {
      rows[b].add_(hessian.slice(0, r, std::min(block.end, r + kSlabRows)).square().sum(0));
    }
  }
  // Then over each block's columns.
  auto both = torch::zeros({nb, nb}, hessian.options())
                  .index_add_(1, index.masked_select(covered),
                              rows.index({torch::indexing::Slice(), covered}));  // (B, B)
  return both.sqrt();
}

torch::Tensor principal_block(const torch::Tensor& hessian, const Block& block) {
  return hessian.slice(0, block.begin, block.end).slice(1, block.begin, block.end);
}

namespace {

// (T, T) mean of values_ij over off-diagonal pairs i != j with i in tensor s, j in tensor t.
torch::Tensor mean_by_tensor_pair(const torch::Tensor& values, const torch::Tensor& off,
                                  const Partition& partition) {
  const int64_t nb = values.size(0);
  int64_t tensors = 0;
  for (const auto& b : partition.blocks) tensors = std::max(tensors, b.tensor + 1);
  std::vector<int64_t> tensor_of_block;
  for (const auto& b : partition.blocks) tensor_of_block.push_back(b.tensor);
  const auto tensor_of = torch::tensor(tensor_of_block, values.options().dtype(torch::kLong));
  const auto options = values.options().dtype(torch::kDouble);
  auto pair_sum = [&](const torch::Tensor& m) {
    auto rows = torch::zeros({tensors, nb}, options).index_add_(0, tensor_of, m);
    return torch::zeros({tensors, tensors}, options).index_add_(1, tensor_of, rows);
  };
  return pair_sum(values.masked_fill(off.logical_not(), 0.0)) /
         pair_sum(off.to(torch::kDouble)).clamp_min(1.0);
}

}  // namespace

RatioSummary off_diagonal_ratios(const torch::Tensor& norms, const Partition& partition) {
  const int64_t nb = norms.size(0);
  RatioSummary s;
  auto norms64 = norms.to(torch::kDouble);
  const auto diagonal = norms64.diagonal();
  // A block with H_ii = 0 (e.g. a ReLU unit dead on every sample) has no ratio: its row is
  // left out of every mean and counted.
  const auto defined = diagonal > 0;
  s.rows_without_ratio = (~defined).sum().item<int64_t>();
  s.ratio = norms64 / diagonal.unsqueeze(1);  // row i divided by ||H_ii||
  auto off = torch::eye(nb, norms64.options()).to(torch::kBool).logical_not().logical_and(
      defined.unsqueeze(1));
  s.ratio.masked_fill_(off.logical_not(), 0.0);
  if (off.any().item<bool>()) {
    auto values = s.ratio.masked_select(off);
    s.mean = values.mean().item<double>();
    s.max = values.max().item<double>();
    s.squared_mean = values.square().mean().item<double>();
  }
  s.by_tensor_pair = mean_by_tensor_pair(s.ratio, off, partition);
  s.squared_by_tensor_pair = mean_by_tensor_pair(s.ratio.square(), off, partition);

  const auto squared = norms64.square();
  const auto all_off = torch::eye(nb, off.options()).logical_not();
  const auto diagonal_squared = squared.diagonal();
  if (nb > 1 && diagonal_squared.sum().item<double>() > 0) {
    s.squared_norm_ratio = squared.masked_select(all_off).mean().item<double>() /
                           diagonal_squared.mean().item<double>();
  }
  // Mean ||H_ii||^2 of each tensor s: the diagonal as the (s, s) pairs of a one-block "matrix".
  const auto diagonal_by_tensor =
      mean_by_tensor_pair(torch::diag(diagonal_squared), torch::eye(nb, off.options()), partition)
          .diagonal();
  const auto by_pair = mean_by_tensor_pair(squared, all_off, partition);
  s.squared_norm_ratio_by_tensor_pair =
      torch::where(diagonal_by_tensor.unsqueeze(1) > 0,
                   by_pair / diagonal_by_tensor.unsqueeze(1).clamp_min(1e-300),
                   torch::zeros_like(by_pair));
  return s;
}

}  // namespace blockopt::hessian
