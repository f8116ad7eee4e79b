#include <blockopt/optim/partition.h>

#include <algorithm>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace blockopt::optim {

int64_t ParamInfo::numel() const {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::vector<ParamInfo> param_infos(const NamedParameters& named_params) {
  std::vector<ParamInfo> infos;
  for (const auto& item : named_params) infos.push_back({item.key(), item.value().sizes().vec()});
  return infos;
}

std::vector<ParamInfo> param_infos(
    const std::vector<std::pair<std::string, torch::Tensor>>& named) {
  std::vector<ParamInfo> infos;
  for (const auto& [name, tensor] : named) infos.push_back({name, tensor.sizes().vec()});
  return infos;
}

Partition Partition::from_layouts(const std::vector<ParamInfo>& params,
                                  std::vector<BlockLayout> layouts) {
  TORCH_CHECK(params.size() == layouts.size(), "partition: ", layouts.size(), " layouts for ",
              params.size(), " tensors");
  Partition part;
  for (size_t t = 0; t < params.size(); ++t) {
    const int64_t numel = params[t].numel();
    const int64_t size = layouts[t].block_size;
    if (numel > 0 && (size <= 0 || numel % size != 0)) {
      throw std::invalid_argument("partition: block size " + std::to_string(size) +
                                  " does not divide the " + std::to_string(numel) +
                                  " elements of " + params[t].name);
    }
    for (int64_t b = 0; b < numel; b += size) {
      part.blocks.push_back({part.total + b, part.total + b + size, static_cast<int64_t>(t),
                             size == numel ? params[t].name
                                           : params[t].name + "[" + std::to_string(b / size) + "]"});
    }
    part.total += numel;
  }
  part.layouts = std::move(layouts);
  return part;
}

namespace {

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

}  // namespace

Partition Partition::custom(std::vector<Block> blocks, int64_t total) {
  Partition part;
  part.blocks = std::move(blocks);
  part.total = total;
  check_blocks(part);
  return part;
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

namespace {

// One block per row: (rows, ...) -> rows blocks of numel / rows.
int64_t row_block(const ParamInfo& p) { return p.numel() / p.shape[0]; }

// One block per attention head: head_dim consecutive rows.
int64_t head_block(const ParamInfo& p, int64_t head_dim) {
  if (head_dim <= 0 || p.shape[0] % head_dim != 0) {
    throw std::invalid_argument("partition: head_dim " + std::to_string(head_dim) +
                                " does not divide the " + std::to_string(p.shape[0]) +
                                " rows of " + p.name);
  }
  return head_dim * row_block(p);
}

bool is_matrix(const ParamInfo& p) { return p.shape.size() >= 2; }

}  // namespace

PartitionRule partition_rule(const std::string& kind, int64_t head_dim) {
  if (kind == "per_tensor") {
    return [](const ParamInfo& p) { return BlockLayout{p.name, p.numel(), true}; };
  }
  if (kind == "per_row") {
    return [](const ParamInfo& p) {
      return BlockLayout{p.name, is_matrix(p) ? row_block(p) : p.numel(), true};
    };
  }
  if (kind == "per_head") {
    return [head_dim](const ParamInfo& p) {
      const bool split = is_matrix(p) && is_query_or_key(p.name);
      return BlockLayout{p.name, split ? head_block(p, head_dim) : p.numel(), true};
    };
  }
  if (kind == "gpt") {
    return [head_dim](const ParamInfo& p) {
      if (!is_matrix(p)) return BlockLayout{p.name, p.numel(), false};
      if (is_query_or_key(p.name)) return BlockLayout{p.name, head_block(p, head_dim), true};
      return BlockLayout{p.name, row_block(p), true};
    };
  }
  if (kind == "v111") {
    return [head_dim](const ParamInfo& p) {
      const bool decay = !name_contains_any(p.name, keywords::v111_no_decay);
      if (name_contains_any(p.name, keywords::v111_per_element)) return BlockLayout{p.name, 1, decay};
      if (name_contains_any(p.name, keywords::v111_query_key) && !p.shape.empty()) {
        return BlockLayout{p.name, head_block(p, head_dim), decay};
      }
      if (name_contains_any(p.name, keywords::v111_per_row) && !p.shape.empty()) {
        return BlockLayout{p.name, row_block(p), decay};
      }
      return BlockLayout{p.name, p.numel(), decay};
    };
  }
  if (kind == "elementwise") {
    return [](const ParamInfo& p) { return BlockLayout{p.name, 1, true}; };
  }
  throw std::invalid_argument("unknown partition '" + kind +
                              "' (known: per_tensor, per_row, per_head, gpt, v111, elementwise)");
}

Partition make_partition(const std::vector<ParamInfo>& params, const PartitionRule& rule) {
  std::vector<BlockLayout> layouts;
  for (const auto& p : params) {
    // An empty tensor has no blocks (and rules divide by its extents).
    layouts.push_back(p.numel() == 0 ? BlockLayout{p.name, 1, true} : rule(p));
  }
  return Partition::from_layouts(params, std::move(layouts));
}

Partition make_partition(const std::string& kind, const std::vector<ParamInfo>& params,
                         int64_t head_dim) {
  return make_partition(params, partition_rule(kind, head_dim));
}

std::string partition_summary(const Partition& partition, const std::vector<ParamInfo>& params) {
  std::ostringstream out;
  int64_t total_blocks = 0;
  for (size_t i = 0; i < partition.layouts.size(); ++i) {
    const auto& layout = partition.layouts[i];
    const auto blocks = params[i].numel() / layout.block_size;
    total_blocks += blocks;
    out << layout.name << ' ' << c10::IntArrayRef(params[i].shape) << " blocks=" << blocks
        << " block_size=" << layout.block_size
        << " decay=" << (layout.weight_decay ? "yes" : "no") << '\n';
  }
  out << "total blocks " << total_blocks << '\n';
  return out.str();
}

std::vector<std::string> partition_warnings(const Partition& partition,
                                            const std::vector<ParamInfo>& params) {
  std::vector<std::string> warnings;
  for (size_t i = 0; i < partition.layouts.size(); ++i) {
    const auto& p = params[i];
    if (is_matrix(p) && p.shape[0] > 1 && partition.layouts[i].block_size == p.numel()) {
      warnings.push_back("Adam-mini partition: matrix " + p.name + " " +
                         c10::str(c10::IntArrayRef(p.shape)) +
                         " got a single whole-tensor block (one learning rate for all of it); "
                         "check that its name matches the partition rule");
    }
  }
  return warnings;
}

}  // namespace blockopt::optim
