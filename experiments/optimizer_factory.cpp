#include <blockopt/experiments/optimizer_factory.h>
#include <blockopt/optim/adamw.h>

namespace blockopt::optim {

namespace {

std::vector<torch::Tensor> values(const NamedParameters& named_params) {
  std::vector<torch::Tensor> params;
  for (const auto& item : named_params) params.push_back(item.value());
  return params;
}

// Reads the AdamW keys, defaults from `defaults` (the C++ option struct).
AdamWOptions read_adamw_options(experiments::ConfigNode& node, AdamWOptions defaults) {
  AdamWOptions o = defaults;
  o.lr(node.get<double>("lr", defaults.lr()));
  const auto [b1, b2] = defaults.betas();
  auto betas = node.get<std::vector<double>>("betas", {b1, b2});
  node.check(betas.size() == 2, "betas", "expected two values [beta1, beta2]");
  o.betas({betas[0], betas[1]});
  o.eps(node.get<double>("eps", defaults.eps()));
  o.weight_decay(node.get<double>("weight_decay", defaults.weight_decay()));
  try {
    o.validate(node.path().empty() ? "optimizer" : node.path());
  } catch (const std::invalid_argument& e) {
    node.fail("", e.what());
  }
  return o;
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const NamedParameters& named_params,
                                                        experiments::ConfigNode config) {
  const auto name = config.get<std::string>("name");
  if (name == "adamw") {
    return std::make_unique<AdamW>(values(named_params), read_adamw_options(config, AdamWOptions()));
  }
  if (name == "adam") {  // AdamW rule without weight decay (no L2 either)
    return std::make_unique<AdamW>(values(named_params),
                                   read_adamw_options(config, AdamWOptions().weight_decay(0.0)));
  }
  config.fail("name", "unknown optimizer '" + name + "' (known: adamw, adam)");
}

}  // namespace blockopt::optim
