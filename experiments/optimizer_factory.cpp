#include <blockopt/experiments/optimizer_factory.h>
#include <blockopt/optim/adam_mini.h>
#include <blockopt/optim/adamw.h>
#include <blockopt/optim/asgo.h>
#include <blockopt/optim/aurora.h>
#include <blockopt/optim/muon.h>
#include <blockopt/optim/normuon.h>

#include <fmt/format.h>

#include <cmath>
#include <type_traits>

namespace blockopt::optim {

namespace {

std::vector<torch::Tensor> values(const NamedParameters& named_params) {
  std::vector<torch::Tensor> params;
  for (const auto& item : named_params) params.push_back(item.value());
  return params;
}

betas_t read_value(experiments::ConfigNode& node, const std::string& key, const betas_t& defaults,
                   const Rule&) {
  const auto [b1, b2] = defaults;
  auto betas = node.get<std::vector<double>>(key, {b1, b2});
  node.check(betas.size() == 2, key, "expected two values [beta1, beta2]");
  return {betas[0], betas[1]};
}

double read_value(experiments::ConfigNode& node, const std::string& key, double defaults,
                  const Rule& rule) {
  if (!rule.none_is_zero) return node.get<double>(key, defaults);
  // a number, or "none" (stored as 0)
  const auto text = node.get<std::string>(key, fmt::format("{}", defaults));
  try {
    return text == "none" ? 0.0 : std::stod(text);
  } catch (const std::logic_error&) {
    node.fail(key, "expected a number or none, got '" + text + "'");
  }
}

// bool, int64_t, and enums by name.
template <typename T>
T read_value(experiments::ConfigNode& node, const std::string& key, const T& defaults, const Rule&) {
  if constexpr (std::is_enum_v<T>) {
    const auto text = node.get<std::string>(key, enum_name(defaults));
    const auto value = find_enum<T>(text);
    node.check(value.has_value(), key, unknown_enum_message<T>(text));
    return *value;
  } else {
    return node.get<T>(key, defaults);
  }
}

// Reads every config key of the options' field list, defaults from `o`; a key "fallback.lr"
// is `lr` in the `fallback:` sub-map. `skip`: a key this optimizer does not have.
template <typename Options>
void read_options(experiments::ConfigNode& config, Options& o, const std::string& skip = "") {
  Options::visit_fields(o, [&](const Field& field, auto& value) {
    const auto key = field.key();
    if (key.empty() || key == skip) return;
    const auto dot = key.find('.');
    if (dot == std::string::npos) {
      value = read_value(config, key, value, field.rule);
    } else {
      auto node = config.child(key.substr(0, dot));
      value = read_value(node, key.substr(dot + 1), value, field.rule);
    }
  });
}

// A matrix optimizer routed by `fallback_keywords`; `layout` receives the routing.
template <typename Optimizer, typename Options>
std::unique_ptr<torch::optim::Optimizer> build_matrix(const NamedParameters& named_params,
                                                      experiments::ConfigNode& config,
                                                      const Options& o, std::string& layout) {
  RoutingRule rule;
  rule.fallback_keywords =
      config.get<std::vector<std::string>>("fallback_keywords", rule.fallback_keywords);
  layout = routing_summary(named_params, rule);
  return std::make_unique<Optimizer>(named_params, o, rule);
}

std::unique_ptr<torch::optim::Optimizer> build(const NamedParameters& named_params,
                                               experiments::ConfigNode& config,
                                               const std::string& name, std::string& layout) {
  if (name == "adamw" || name == "adam") {
    // adam: the AdamW rule without weight decay and without the key (no L2 either)
    AdamWOptions o = name == "adam" ? AdamWOptions().weight_decay(0.0) : AdamWOptions();
    read_options(config, o, name == "adam" ? "weight_decay" : "");
    return std::make_unique<AdamW>(values(named_params), o);
  }
  if (name == "adam_mini") {
    AdamMiniOptions o;
    read_options(config, o);
    auto optimizer = std::make_unique<AdamMini>(named_params, o);
    layout = optimizer->partition_summary();
    for (const auto& warning : optimizer->partition_warnings()) layout += "warning: " + warning + "\n";
    return optimizer;
  }
  if (name == "muon") {
    // `preset: torch` starts from MuonOptions::torch_compat(); keys given next to it override.
    // NOTE: read only when present, so configs without it resolve as before.
    MuonOptions o;
    if (config.has("preset")) {
      const auto preset = config.get<std::string>("preset");
      config.check(preset == "torch", "preset",
                   "unknown value \"" + preset + "\" (allowed: torch)");
      o = MuonOptions::torch_compat();
    }
    read_options(config, o);
    return build_matrix<Muon>(named_params, config, o, layout);
  }
  if (name == "normuon") {
    NorMuonOptions o;
    read_options(config, o);
    return build_matrix<NorMuon>(named_params, config, o, layout);
  }
  if (name == "aurora") {
    AuroraOptions o;
    read_options(config, o);
    return build_matrix<Aurora>(named_params, config, o, layout);
  }
  if (name == "asgo") {
    // NOTE: the constructor sets fallback_lr = lr, so the fallback shares ASGO's lr unless
    // fallback.lr is given.
    ASGOOptions o(config.get<double>("lr", ASGOOptions().lr()));
    read_options(config, o);
    return build_matrix<ASGO>(named_params, config, o, layout);
  }
  config.fail("name", "unknown optimizer '" + name +
                          "' (known: adamw, adam, adam_mini, muon, normuon, aurora, asgo)");
}

// Shortest round-trip form; below 0.01 in scientific notation without a padded exponent
// (1e-3, 3e-4).
std::string format_default(double value) {
  if (value == 0.0 || std::abs(value) >= 1e-2) return fmt::format("{}", value);
  std::string text;
  for (int digits = 0; digits <= 17; ++digits) {
    text = fmt::format("{:.{}e}", value, digits);
    if (std::stod(text) == value) break;
  }
  const auto e = text.find('e');
  const auto exponent = std::stoi(text.substr(e + 1));
  return text.substr(0, e) + "e" + std::to_string(exponent);
}

std::string format_default(const betas_t& betas) {
  return "(" + format_default(std::get<0>(betas)) + ", " + format_default(std::get<1>(betas)) + ")";
}

template <typename T>
std::string format_default(const T& value) {
  if constexpr (std::is_enum_v<T>) {
    const std::string name = enum_name(value);
    return name.empty() ? "\"\"" : name;
  } else if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else {
    return std::to_string(value);
  }
}

template <typename Options>
std::string options_table(const Options& defaults) {
  std::string table = "| option | meaning | default |\n|---|---|---|\n";
  Options::visit_fields(defaults, [&](const Field& field, const auto& value) {
    if (field.key().empty()) return;
    table += "| " + field.key() + " | " + field.doc + " | " + format_default(value) + " |\n";
  });
  return table;
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

std::vector<std::string> documented_optimizers() {
  return {"adamw", "adam_mini", "muon", "normuon", "aurora", "asgo"};
}

std::string options_markdown(const std::string& optimizer) {
  if (optimizer == "adamw") return options_table(AdamWOptions());
  if (optimizer == "adam_mini") return options_table(AdamMiniOptions());
  if (optimizer == "muon") return options_table(MuonOptions());
  if (optimizer == "normuon") return options_table(NorMuonOptions());
  if (optimizer == "aurora") return options_table(AuroraOptions());
  if (optimizer == "asgo") return options_table(ASGOOptions());
  throw std::invalid_argument("options_markdown: unknown optimizer '" + optimizer + "'");
}

}  // namespace blockopt::optim
