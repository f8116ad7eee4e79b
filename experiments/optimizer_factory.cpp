#include <blockopt/experiments/optimizer_factory.h>
#include <blockopt/optim/adam_mini.h>
#include <blockopt/optim/adamw.h>
#include <blockopt/optim/asgo.h>
#include <blockopt/optim/muon.h>
#include <blockopt/optim/normuon.h>

namespace blockopt::optim {

namespace {

std::vector<torch::Tensor> values(const NamedParameters& named_params) {
  std::vector<torch::Tensor> params;
  for (const auto& item : named_params) params.push_back(item.value());
  return params;
}

std::tuple<double, double> read_betas(experiments::ConfigNode& node, const std::string& key,
                                      std::tuple<double, double> defaults) {
  const auto [b1, b2] = defaults;
  auto betas = node.get<std::vector<double>>(key, {b1, b2});
  node.check(betas.size() == 2, key, "expected two values [beta1, beta2]");
  return {betas[0], betas[1]};
}

// Reads the AdamW keys, defaults from `defaults` (the C++ option struct); `adam` has no
// weight_decay key at all.
AdamWOptions read_adamw_options(experiments::ConfigNode& node, AdamWOptions defaults,
                                bool with_weight_decay) {
  AdamWOptions o = defaults;
  o.lr(node.get<double>("lr", defaults.lr()));
  o.betas(read_betas(node, "betas", defaults.betas()));
  o.eps(node.get<double>("eps", defaults.eps()));
  if (with_weight_decay) o.weight_decay(node.get<double>("weight_decay", defaults.weight_decay()));
  o.float32_state(node.get<bool>("float32_state", defaults.float32_state()));
  return o;
}

// The `fallback:` sub-map of a matrix optimizer, into the options' fallback_* fields.
template <typename Options>
void read_fallback(experiments::ConfigNode& config, Options& o) {
  auto node = config.child("fallback");
  o.fallback_lr(node.get<double>("lr", o.fallback_lr()));
  o.fallback_betas(read_betas(node, "betas", o.fallback_betas()));
  o.fallback_eps(node.get<double>("eps", o.fallback_eps()));
  o.fallback_weight_decay(node.get<double>("weight_decay", o.fallback_weight_decay()));
}

RoutingRule read_routing(experiments::ConfigNode& config) {
  RoutingRule rule;
  rule.fallback_keywords = config.get<std::vector<std::string>>("fallback_keywords", rule.fallback_keywords);
  return rule;
}

// Keys shared by Muon and NorMuon.
template <typename Options>
void read_muon_common(experiments::ConfigNode& config, Options& o) {
  o.lr(config.get<double>("lr", o.lr()));
  o.momentum(config.get<double>("momentum", o.momentum()));
  o.nesterov(config.get<bool>("nesterov", o.nesterov()));
  o.weight_decay(config.get<double>("weight_decay", o.weight_decay()));
  o.ns_steps(config.get<int64_t>("ns_steps", o.ns_steps()));
  o.ns_eps_mode(config.get<std::string>("ns_eps_mode", o.ns_eps_mode()));
  o.ns_dtype(config.get<std::string>("ns_dtype", o.ns_dtype()));
  o.float32_state(config.get<bool>("float32_state", o.float32_state()));
  read_fallback(config, o);
}

std::unique_ptr<torch::optim::Optimizer> build(const NamedParameters& named_params,
                                               experiments::ConfigNode& config,
                                               const std::string& name, std::string& layout) {
  if (name == "adamw") {
    return std::make_unique<AdamW>(values(named_params),
                                   read_adamw_options(config, AdamWOptions(), true));
  }
  if (name == "adam") {  // AdamW rule without weight decay (no L2 either)
    return std::make_unique<AdamW>(
        values(named_params), read_adamw_options(config, AdamWOptions().weight_decay(0.0), false));
  }
  if (name == "adam_mini") {
    AdamMiniOptions o;
    o.lr(config.get<double>("lr", o.lr()));
    o.betas(read_betas(config, "betas", o.betas()));
    o.eps(config.get<double>("eps", o.eps()));
    o.weight_decay(config.get<double>("weight_decay", o.weight_decay()));
    o.head_dim(config.get<int64_t>("head_dim", o.head_dim()));
    o.partition(config.get<std::string>("partition", o.partition()));
    o.float32_state(config.get<bool>("float32_state", o.float32_state()));
    auto optimizer = std::make_unique<AdamMini>(named_params, o);
    layout = optimizer->partition_summary();
    for (const auto& warning : optimizer->partition_warnings()) layout += "warning: " + warning + "\n";
    return optimizer;
  }
  if (name == "muon") {
    MuonOptions o;
    read_muon_common(config, o);
    o.scale(config.get<std::string>("scale", o.scale()));
    const auto rule = read_routing(config);
    layout = routing_summary(named_params, rule);
    return std::make_unique<Muon>(named_params, o, rule);
  }
  if (name == "normuon") {
    NorMuonOptions o;
    read_muon_common(config, o);
    o.beta2(config.get<double>("beta2", o.beta2()));
    o.final_scale(config.get<std::string>("final_scale", o.final_scale()));
    const auto rule = read_routing(config);
    layout = routing_summary(named_params, rule);
    return std::make_unique<NorMuon>(named_params, o, rule);
  }
  if (name == "asgo") {
    ASGOOptions o;
    o.lr(config.get<double>("lr", o.lr()));
    o.fallback_lr(o.lr());  // the fallback shares ASGO's lr unless fallback.lr is given
    o.momentum(config.get<double>("momentum", o.momentum()));
    o.beta2(config.get<double>("beta2", o.beta2()));
    o.eps(config.get<double>("eps", o.eps()));
    o.weight_decay(config.get<double>("weight_decay", o.weight_decay()));
    o.root(config.get<std::string>("root", o.root()));
    o.root_steps(config.get<int64_t>("root_steps", o.root_steps()));
    o.damping(config.get<double>("damping", o.damping()));
    o.side(config.get<std::string>("side", o.side()));
    o.float32_state(config.get<bool>("float32_state", o.float32_state()));
    // rms_target: a number, or "none" (stored as 0: no normalisation)
    const auto rms = config.get<std::string>("rms_target", fmt::format("{}", o.rms_target()));
    try {
      o.rms_target(rms == "none" ? 0.0 : std::stod(rms));
    } catch (const std::logic_error&) {
      config.fail("rms_target", "expected a number or none, got '" + rms + "'");
    }
    read_fallback(config, o);
    const auto rule = read_routing(config);
    layout = routing_summary(named_params, rule);
    return std::make_unique<ASGO>(named_params, o, rule);
  }
  config.fail("name", "unknown optimizer '" + name +
                          "' (known: adamw, adam, adam_mini, muon, normuon, asgo)");
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const NamedParameters& named_params,
                                                        experiments::ConfigNode config,
                                                        std::string* layout) {
  const auto name = config.get<std::string>("name");
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::string described;
  try {
    optimizer = build(named_params, config, name, described);
    if (layout != nullptr) *layout = described;
  } catch (const std::invalid_argument& e) {  // option validation, naming the YAML path
    config.fail("", e.what());
  }
  config.check_no_unknown_keys();
  return optimizer;
}

}  // namespace blockopt::optim
