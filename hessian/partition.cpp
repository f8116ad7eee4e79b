#include <blockopt/hessian/partition.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace blockopt::hessian {

int64_t ParamInfo::numel() const {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::vector<ParamInfo> param_infos(
    const std::vector<std::pair<std::string, torch::Tensor>>& named) {
  std::vector<ParamInfo> infos;
  for (const auto& [name, t] : named) infos.push_back({name, t.sizes().vec()});
  return infos;
}

namespace {

// Splits each tensor into consecutive blocks of `rows_per_block(i)` rows (0 = whole tensor).
template <typename RowsFn>
Partition split_rows(const std::vector<ParamInfo>& params, RowsFn rows_per_block) {
  Partition part;
  for (size_t t = 0; t < params.size(); ++t) {
    const auto& p = params[t];
    const int64_t numel = p.numel();
    if (numel == 0) continue;  // an empty tensor has no blocks
    const int64_t rows = rows_per_block(p);
    const int64_t row_size = p.shape.size() >= 2 ? numel / p.shape[0] : numel;
    const int64_t step = rows > 0 && p.shape.size() >= 2 ? rows * row_size : numel;
    for (int64_t b = 0; b < numel; b += step) {
      part.blocks.push_back({part.total + b, part.total + std::min(b + step, numel),
                             static_cast<int64_t>(t),
                             step == numel ? p.name : p.name + "[" + std::to_string(b / step) + "]"});
    }
    part.total += numel;
  }
  return part;
}

// Throws unless every block lies in [0, P) and no two overlap: on the host, O(B log B).
void check_blocks(const Partition& partition) {
  const auto& blocks = partition.blocks;
  for (size_t b = 0; b < blocks.size(); ++b) {
    TORCH_CHECK(0 <= blocks[b].begin && blocks[b].begin < blocks[b].end &&
                    blocks[b].end <= partition.total,
                "partition: block ", b, " range [", blocks[b].begin, ", ", blocks[b].end,
                ") outside [0, ", partition.total, ")");
  }
  std::vector<size_t> order(blocks.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return blocks[a].begin < blocks[b].begin; });
  for (size_t k = 1; k < order.size(); ++k) {
    const auto &previous = blocks[order[k - 1]], &next = blocks[order[k]];
    TORCH_CHECK(previous.end <= next.begin, "partition: blocks ", order[k - 1], " and ",
                order[k], " overlap at ", next.begin);
  }
}

bool is_query_or_key(const std::string& name) {
  for (const char* key : {"q_proj", "k_proj", "wq", "wk"}) {
    if (name.find(key) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

Partition Partition::per_tensor(const std::vector<ParamInfo>& params) {
  return split_rows(params, [](const ParamInfo&) { return int64_t{0}; });
}

Partition Partition::per_row(const std::vector<ParamInfo>& params) {
  return split_rows(params, [](const ParamInfo&) { return int64_t{1}; });
}

Partition Partition::per_head(const std::vector<ParamInfo>& params, int64_t head_dim) {
  TORCH_CHECK(head_dim > 0, "per_head partition: head_dim must be > 0");
  return split_rows(params, [&](const ParamInfo& p) {
    return is_query_or_key(p.name) ? head_dim : int64_t{0};
  });
}

Partition Partition::from_sizes(const std::vector<std::pair<int64_t, int64_t>>& numel_and_block) {
  Partition part;
  for (size_t t = 0; t < numel_and_block.size(); ++t) {
    const auto [numel, size] = numel_and_block[t];
    TORCH_CHECK(size > 0, "partition: block size must be > 0");
    for (int64_t b = 0; b < numel; b += size) {
      part.blocks.push_back({part.total + b, part.total + std::min(b + size, numel),
                             static_cast<int64_t>(t), ""});
    }
    part.total += numel;
  }
  return part;
}

Partition Partition::custom(std::vector<Block> blocks, int64_t total) {
  Partition part{std::move(blocks), total};
  check_blocks(part);
  return part;
}

Partition make_partition(const std::string& kind, const std::vector<ParamInfo>& params,
                         int64_t head_dim) {
  if (kind == "per_tensor") return Partition::per_tensor(params);
  if (kind == "per_row") return Partition::per_row(params);
  if (kind == "per_head") return Partition::per_head(params, head_dim);
  throw std::invalid_argument("unknown partition '" + kind +
                              "' (expected per_tensor, per_row or per_head)");
}

torch::Tensor Partition::block_index(torch::Device device) const {
  check_blocks(*this);
  // +(b+1) at each block's begin and -(b+1) at its end: the prefix sum is b+1 inside block b
  // and 0 in the gaps (the blocks are disjoint). Integer arithmetic, so exact on any device.
  std::vector<int64_t> positions, marks;
  for (int64_t b = 0; b < size(); ++b) {
    positions.insert(positions.end(), {blocks[b].begin, blocks[b].end});
    marks.insert(marks.end(), {b + 1, -(b + 1)});
  }
  const auto options = torch::TensorOptions(torch::kLong).device(device);
  auto delta = torch::zeros({total + 1}, options)
                   .index_add_(0, torch::tensor(positions, options), torch::tensor(marks, options));
  return delta.cumsum(0).slice(0, 0, total) - 1;  // (P)
}

torch::Tensor block_norms(const torch::Tensor& hessian, const Partition& partition) {
  TORCH_CHECK(hessian.dim() == 2 && hessian.size(0) == partition.total &&
                  hessian.size(1) == partition.total,
              "block_norms: H must be (", partition.total, ", ", partition.total, ")");
  const int64_t nb = partition.size();
  auto index = partition.block_index(hessian.device());
  auto covered = index.ge(0);
  auto idx = index.masked_select(covered);                        // (P')
  auto sq = hessian.index({covered}).index({torch::indexing::Slice(), covered}).square();
  // Segment sums of H^2 over rows, then over columns.
  auto rows = torch::zeros({nb, sq.size(1)}, sq.options()).index_add_(0, idx, sq);  // (B, P')
  auto both = torch::zeros({nb, nb}, sq.options()).index_add_(1, idx, rows);        // (B, B)
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
  return s;
}

}  // namespace blockopt::hessian
