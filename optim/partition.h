#pragma once
// Blocks of the parameters, as plain data: the one Block / Partition vocabulary of Adam-mini
// (one second-moment scalar per block) and the Hessian probe (block norms of H). Each tensor
// is split into equal consecutive blocks in row-major order (BlockLayout); Partition holds
// those layouts and the resulting index ranges of the flattened parameter vector.
#include <blockopt/optim/keywords.h>

#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace blockopt::optim {

using NamedParameters = torch::OrderedDict<std::string, torch::Tensor>;

// A parameter tensor by name and shape (no data): what a partition rule looks at.
struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const;
};
std::vector<ParamInfo> param_infos(const NamedParameters& named_params);
std::vector<ParamInfo> param_infos(const std::vector<std::pair<std::string, torch::Tensor>>& named);

// One tensor's blocks: numel / block_size consecutive blocks of block_size elements.
struct BlockLayout {
  std::string name;
  int64_t block_size = 1;     // numel is a multiple of it
  bool weight_decay = true;   // Adam-mini: decoupled decay applies to this tensor
};

// A range [begin, end) of the flattened parameter vector.
struct Block {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t tensor = 0;  // parameter tensor the block lies in (for by-layer summaries)
  std::string name;    // the tensor's name, with "[i]" when it has several blocks
};

struct Partition {
  std::vector<BlockLayout> layouts;  // one per tensor, in parameter order (empty for custom())
  std::vector<Block> blocks;         // in order; an empty tensor has none
  int64_t total = 0;                 // P, the flattened parameter count

  int64_t size() const { return static_cast<int64_t>(blocks.size()); }
  // Coordinate -> block index, -1 where no block covers it: (P) int64 on `device`. Throws on
  // a range outside [0, P) and on overlapping blocks.
  torch::Tensor block_index(torch::Device device = torch::kCPU) const;

  // The blocks of one layout per tensor. Throws std::invalid_argument naming the tensor when a
  // block size does not divide its numel.
  static Partition from_layouts(const std::vector<ParamInfo>& params,
                                std::vector<BlockLayout> layouts);
  // Arbitrary non-overlapping ranges (validated); no per-tensor layouts.
  static Partition custom(std::vector<Block> blocks, int64_t total);
};

// Maps a tensor to its layout; throws std::invalid_argument for an impossible layout.
using PartitionRule = std::function<BlockLayout(const ParamInfo& param)>;

// The built-in rules (spec/optimizers.md, docs/hessian):
//   per_tensor, per_row, per_head  the Hessian probe's partitions (decay everywhere);
//   gpt          Adam-mini for transformers: query/key per head, other matrices per row,
//                vectors whole without decay;
//   v111         the reference Adam-mini v1.1.1 rules (keywords::v111_*);
//   elementwise  one block per element (Adam).
PartitionRule partition_rule(const std::string& kind, int64_t head_dim);

Partition make_partition(const std::vector<ParamInfo>& params, const PartitionRule& rule);
Partition make_partition(const std::string& kind, const std::vector<ParamInfo>& params,
                         int64_t head_dim = 0);

// Table "name shape blocks block_size decay" plus the total block count.
std::string partition_summary(const Partition& partition, const std::vector<ParamInfo>& params);

// One message per matrix (dim >= 2) that got a single whole-tensor block: usually a name the
// rule did not recognise (the Adam-mini v1.1.1 pitfall). Empty when there is none.
std::vector<std::string> partition_warnings(const Partition& partition,
                                            const std::vector<ParamInfo>& params);

}  // namespace blockopt::optim
