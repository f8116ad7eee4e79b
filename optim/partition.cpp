#include <blockopt/optim/partition.h>

#include <sstream>
#include <stdexcept>

namespace blockopt::optim {

namespace {

// One block per row: (rows, cols) -> rows blocks of cols.
int64_t row_block(const torch::Tensor& p) { return p.numel() / p.size(0); }

// One block per attention head: head_dim consecutive rows.
int64_t head_block(const std::string& name, const torch::Tensor& p, int64_t head_dim) {
  if (head_dim <= 0 || p.size(0) % head_dim != 0) {
    throw std::invalid_argument("Adam-mini: head_dim " + std::to_string(head_dim) +
                                " does not divide the " + std::to_string(p.size(0)) +
                                " rows of " + name);
  }
  return head_dim * row_block(p);
}

const std::vector<std::string> kGptQK = {"q_proj", "k_proj", "wq",  "wk",    "to_q",
                                         "to_k",   "c_q",    "c_k", "query", "key"};
const std::vector<std::string> kV111Bias = {"bias"};
const std::vector<std::string> kV111QK = {"k_proj", "q_proj", "wq", "wk", "query", "key"};
const std::vector<std::string> kV111Row = {
    "embed", "embd",  "wte", "lm_head", "output",    "final_layer", "v_proj", "wv",
    "value", "o_proj", "wo", "attn.proj", "feed_forward", "linear",  "mlp"};
const std::vector<std::string> kV111NoDecay = {"norm", "ln", "bias"};

}  // namespace

PartitionRule partition_rule(const std::string& kind, int64_t head_dim) {
  if (kind == "gpt") {
    return [head_dim](const std::string& name, const torch::Tensor& p) {
      if (p.dim() < 2) return BlockLayout{name, p.numel(), false};
      if (name_contains_any(name, kGptQK)) return BlockLayout{name, head_block(name, p, head_dim), true};
      return BlockLayout{name, row_block(p), true};
    };
  }
  if (kind == "v111") {
    return [head_dim](const std::string& name, const torch::Tensor& p) {
      const bool decay = !name_contains_any(name, kV111NoDecay);
      if (name_contains_any(name, kV111Bias)) return BlockLayout{name, 1, decay};
      if (name_contains_any(name, kV111QK) && p.dim() >= 1) {
        return BlockLayout{name, head_block(name, p, head_dim), decay};
      }
      if (name_contains_any(name, kV111Row) && p.dim() >= 1) return BlockLayout{name, row_block(p), decay};
      return BlockLayout{name, p.numel(), decay};
    };
  }
  if (kind == "elementwise") {
    return [](const std::string& name, const torch::Tensor&) { return BlockLayout{name, 1, true}; };
  }
  throw std::invalid_argument("Adam-mini: unknown partition '" + kind +
                              "' (known: gpt, v111, elementwise, or a custom function)");
}

Partition make_partition(const NamedParameters& named_params, const PartitionRule& rule) {
  Partition partition;
  for (const auto& item : named_params) {
    const auto numel = item.value().numel();
    if (numel == 0) {  // an empty tensor has no blocks (and rules divide by its extents)
      partition.push_back(BlockLayout{item.key(), 1, true});
      continue;
    }
    auto layout = rule(item.key(), item.value());
    if (layout.block_size <= 0 || numel % layout.block_size != 0) {
      throw std::invalid_argument("Adam-mini: block size " + std::to_string(layout.block_size) +
                                  " does not divide the " + std::to_string(numel) +
                                  " elements of " + item.key());
    }
    partition.push_back(std::move(layout));
  }
  return partition;
}

std::string partition_summary(const Partition& partition, const NamedParameters& named_params) {
  std::ostringstream out;
  int64_t total_blocks = 0;
  for (size_t i = 0; i < partition.size(); ++i) {
    const auto& p = named_params[i].value();
    const auto blocks = p.numel() / partition[i].block_size;
    total_blocks += blocks;
    out << partition[i].name << ' ' << p.sizes() << " blocks=" << blocks
        << " block_size=" << partition[i].block_size
        << " decay=" << (partition[i].weight_decay ? "yes" : "no") << '\n';
  }
  out << "total blocks " << total_blocks << '\n';
  return out.str();
}

std::vector<std::string> partition_warnings(const Partition& partition,
                                            const NamedParameters& named_params) {
  std::vector<std::string> warnings;
  for (size_t i = 0; i < partition.size(); ++i) {
    const auto& p = named_params[i].value();
    if (p.dim() >= 2 && p.size(0) > 1 && partition[i].block_size == p.numel()) {
      warnings.push_back("Adam-mini partition: matrix " + partition[i].name + " " +
                         c10::str(p.sizes()) +
                         " got a single whole-tensor block (one learning rate for all of it); "
                         "check that its name matches the partition rule");
    }
  }
  return warnings;
}

}  // namespace blockopt::optim
