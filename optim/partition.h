#pragma once
// Adam-mini block partitions as plain data: for every parameter, the size of its blocks
// (consecutive elements in row-major order sharing one second-moment scalar) and whether
// weight decay applies. Shared with the Hessian probe and printable.
#include <blockopt/optim/routing.h>

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace blockopt::optim {

struct BlockLayout {
  std::string name;
  int64_t block_size = 1;     // numel is a multiple of it; numel / block_size blocks
  bool weight_decay = true;   // decoupled decay applies to this parameter
};
using Partition = std::vector<BlockLayout>;

// Maps (name, tensor) to its layout; throws std::invalid_argument for an impossible layout.
using PartitionRule = std::function<BlockLayout(const std::string& name, const torch::Tensor&)>;

// The built-in rules of spec/optimizers.md: "gpt", "v111", "elementwise".
PartitionRule partition_rule(const std::string& kind, int64_t head_dim);

Partition make_partition(const NamedParameters& named_params, const PartitionRule& rule);

// Table "name shape blocks block_size decay" plus the total block count.
std::string partition_summary(const Partition& partition, const NamedParameters& named_params);

// One message per matrix (dim >= 2) that got a single whole-tensor block: usually a name the
// rule did not recognise (the Adam-mini v1.1.1 pitfall). Empty when there is none.
std::vector<std::string> partition_warnings(const Partition& partition,
                                            const NamedParameters& named_params);

}  // namespace blockopt::optim
