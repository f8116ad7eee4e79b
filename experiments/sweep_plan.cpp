// Expanding a sweep config into its runs (sweep.h: plan_sweep).
#include <blockopt/experiments/config.h>
#include <blockopt/experiments/detail/sweep.h>
#include <blockopt/experiments/sweep.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace blockopt::experiments {

bool is_sweep(const YAML::Node& config) { return config.IsMap() && config["sweep"]; }

namespace {

// Reads the learning rates scale_lrs multiplies, so a value that is not a number names its key.
void check_lrs(ConfigNode& optimizer) {
  if (optimizer.has("lr")) optimizer.get<double>("lr");
  if (optimizer.has("fallback")) {
    auto fallback = optimizer.child("fallback");
    if (fallback.has("lr")) fallback.get<double>("lr");
    fallback.accept_all_keys();
  }
}

// NOTE: run configs share every value they do not change with the sweep config, instead of
// YAML::Clone copies: a clone loses the source lines, so every run's config error said
// "line 1". Changed mappings are copied on the way down; nothing shared is modified.

// A new mapping holding the same (shared) values.
YAML::Node shallow_copy(const YAML::Node& map) {
  YAML::Node copy(YAML::NodeType::Map);
  for (const auto& entry : map) copy[entry.first.Scalar()] = entry.second;
  return copy;
}

// map[key] = value without writing through to a node `map[key]` may share with another config.
void replace(YAML::Node& map, const std::string& key, const YAML::Node& value) {
  map.remove(key);
  map[key] = value;
}

// Sets `path` (a.b.c) in `root`, copying the mappings on the way (see the note above).
void set_in_copy(YAML::Node& root, const std::string& path, const YAML::Node& value) {
  const auto dot = path.find('.');
  const auto key = path.substr(0, dot);
  if (key.empty()) throw ConfigError("empty key in '" + path + "'");
  if (dot == std::string::npos) return replace(root, key, value);
  const auto existing = root[key];
  if (existing && !existing.IsMap() && !existing.IsNull()) {
    throw ConfigError(path + ": '" + key + "' holds a non-mapping value");
  }
  YAML::Node child = existing && existing.IsMap() ? shallow_copy(existing)
                                                  : YAML::Node(YAML::NodeType::Map);
  set_in_copy(child, path.substr(dot + 1), value);
  replace(root, key, child);
}

// True when `section` gives a `key` value; null (~) means the default, as in ConfigNode.
bool gives(const YAML::Node& section, const char* key) {
  return section && section.IsMap() && section[key] && !section[key].IsNull();
}

// An optimizer section with every learning rate (its own and its fallback's) scaled; a default
// learning rate (absent or null) stays the default.
YAML::Node scaled_lrs(const YAML::Node& optimizer, double multiplier) {
  auto scaled = shallow_copy(optimizer);
  if (gives(optimizer, "lr")) {
    replace(scaled, "lr", YAML::Node(fmt::format("{}", optimizer["lr"].as<double>() * multiplier)));
  }
  if (gives(optimizer["fallback"], "lr")) {
    const double fallback_lr = optimizer["fallback"]["lr"].as<double>() * multiplier;
    set_in_copy(scaled, "fallback.lr", YAML::Node(fmt::format("{}", fallback_lr)));
  }
  return scaled;
}

// Directory name: the label with spaces and '=' made path-friendly.
std::string run_id(std::string label, double multiplier, uint64_t seed) {
  for (auto& c : label) {
    if (c == ' ') c = '-';
    else if (c == '=' || c == '/') c = '_';
  }
  return fmt::format("{}-lr{}x-s{}", label, multiplier, seed);
}

// sweep.tune: the first lr grid, its bounds and the final seeds; errors name the key.
SweepTune read_tune(ConfigNode& sweep, const YAML::Node& source,
                    const std::vector<uint64_t>& tuning_seeds) {
  auto section = sweep.child("tune");
  SweepTune tune;
  tune.tuning_seeds = tuning_seeds;
  const auto range = section.get<std::vector<int>>("lr_log2", {tune.lr_log2_low, tune.lr_log2_high});
  section.check(range.size() == 2 && range[0] <= range[1], "lr_log2",
                "must be [low, high] with low <= high (exponents k of lr = 2^k x the base lr)");
  tune.lr_log2_low = range[0];
  tune.lr_log2_high = range[1];
  // NOTE: 3 more doublings on each side by default: 64x beyond the first grid is far enough
  // that a best still on the bound says the base lr is wrong, not that the grid is short.
  const auto bounds = section.get<std::vector<int>>("extend_to", {range[0] - 3, range[1] + 3});
  section.check(bounds.size() == 2 && bounds[0] <= range[0] && bounds[1] >= range[1], "extend_to",
                "must be [low, high] enclosing lr_log2");
  tune.bound_low = bounds[0];
  tune.bound_high = bounds[1];
  if (source.IsMap() && source["final_seeds"] && source["final_seeds"].IsSequence()) {
    tune.final_seeds = section.get<std::vector<uint64_t>>("final_seeds");
  } else {
    const auto count = section.get<int>("final_seeds", 5);
    section.check(count >= 0, "final_seeds", "must be a count >= 0 or a list of seeds");
    const uint64_t first = *std::max_element(tuning_seeds.begin(), tuning_seeds.end()) + 1;
    for (int i = 0; i < count; ++i) tune.final_seeds.push_back(first + i);
  }
  for (uint64_t seed : tune.final_seeds) {
    // NOTE: the best lr was chosen on the tuning seeds, so their losses are biased low there.
    section.check(std::find(tuning_seeds.begin(), tuning_seeds.end(), seed) == tuning_seeds.end(),
                  "final_seeds", fmt::format("seed {} is also a tuning seed (sweep.seeds): the final "
                                             "seeds must be fresh", seed));
  }
  return tune;
}

}  // namespace

namespace detail {

SweepRun make_run(const SweepArm& arm, double multiplier, uint64_t seed, const std::string& stage) {
  SweepRun run;
  run.id = run_id(arm.label, multiplier, seed);
  run.optimizer_label = arm.label;
  run.entry_label = arm.entry_label;
  run.workload = arm.workload;
  run.stage = stage;
  run.lr_multiplier = multiplier;
  run.seed = seed;
  run.config = shallow_copy(arm.config);
  replace(run.config, "name", YAML::Node(run.id));
  replace(run.config, "seed", YAML::Node(seed));
  replace(run.config, "optimizer", scaled_lrs(arm.config["optimizer"], multiplier));
  return run;
}

}  // namespace detail

SweepPlan plan_sweep(const YAML::Node& config, const std::string& origin) {
  check_config_tree(config, origin);
  // Only the sweep section (with name, seed and the optimizer's label and learning rates) is
  // read here; the rest is checked by each run.
  YAML::Node read_here(YAML::NodeType::Map);
  for (const char* key : {"name", "seed", "sweep", "optimizer"}) {
    if (config[key]) read_here[key] = config[key];
  }
  auto root = ConfigNode::root(read_here, origin);
  SweepPlan plan;
  plan.name = root.get<std::string>("name");
  root.check(!plan.name.empty() && plan.name.find('/') == std::string::npos, "name",
             "must be a non-empty name without '/'");
  const auto default_seed = root.get<uint64_t>("seed", 0);
  auto sweep = root.child("sweep");
  plan.parallel = sweep.get<int>("parallel", 1);
  sweep.check(plan.parallel >= 1, "parallel", "must be >= 1");
  plan.target_loss = sweep.get<double>("target_loss", 0.0);
  sweep.check(plan.target_loss >= 0.0, "target_loss", "must be >= 0 (0 = none)");
  auto multipliers = sweep.get<std::vector<double>>("lr_multipliers", {1.0});
  for (double m : multipliers) sweep.check(m > 0.0, "lr_multipliers", "every multiplier must be > 0");
  auto seeds = sweep.get<std::vector<uint64_t>>("seeds", {default_seed});
  sweep.check(!seeds.empty(), "seeds", "needs at least one seed");
  if (sweep.has("tune")) {
    sweep.check(!sweep.has("lr_multipliers"), "tune",
                "sets the lr grid itself: remove lr_multipliers, or tune");
    plan.tune = read_tune(sweep, config["sweep"]["tune"], seeds);
    multipliers.clear();
    for (int k = plan.tune->lr_log2_low; k <= plan.tune->lr_log2_high; ++k) {
      multipliers.push_back(std::ldexp(1.0, k));
    }
  }

  // Optimizer entries: each a full optimizer section, plus an optional label.
  std::vector<std::pair<std::string, YAML::Node>> optimizers;
  if (sweep.has("optimizers")) {
    std::set<std::string> labels;
    for (auto& entry : sweep.children("optimizers")) {
      // The optimizer keys are checked when each run is built; here only label, name, lrs.
      const auto& source = config["sweep"]["optimizers"][optimizers.size()];
      const auto name = entry.get<std::string>("name", "");
      const auto label = entry.get<std::string>("label", name);
      entry.check(!label.empty(), "name", "every optimizer entry needs a name");
      entry.check(labels.insert(label).second, "label",
                  "duplicate optimizer label '" + label + "' (add label: to tell them apart)");
      check_lrs(entry);
      YAML::Node section = shallow_copy(source);
      section.remove("label");
      optimizers.emplace_back(label, section);
      entry.accept_all_keys();  // the optimizer keys are validated by each run
    }
    if (root.has("optimizer")) root.child("optimizer").accept_all_keys();  // replaced by each entry
  } else {
    sweep.check(root.has("optimizer"), "optimizers", "no optimizers: and no top-level optimizer:");
    auto optimizer = root.child("optimizer");
    const auto name = optimizer.get<std::string>("name", "optimizer");
    check_lrs(optimizer);
    optimizer.accept_all_keys();  // validated by each run
    optimizers.emplace_back(name, config["optimizer"]);
  }
  // grid: {config.path: [values]}: the cartesian product of those settings.
  struct Setting {
    std::string suffix;  // e.g. " classes=10"
    std::vector<std::pair<std::string, YAML::Node>> values;
  };
  // NOTE: every run is a process and a directory; a plan larger than this is a typo (a list
  // pasted twice), and expanding it would clone the config that many times.
  constexpr double kMaxRuns = 10000;
  std::vector<Setting> settings(1);
  auto grid = sweep.child("grid");
  grid.accept_all_keys();  // arbitrary config paths, checked when each run is built
  if (config["sweep"]["grid"]) {
    for (const auto& entry : config["sweep"]["grid"]) {
      const auto path = entry.first.as<std::string>();
      grid.check(entry.second.IsSequence() && entry.second.size() > 0, "",
                 "grid." + path + " must be a non-empty list of values");
      grid.check(static_cast<double>(settings.size()) * entry.second.size() <= kMaxRuns, "",
                 fmt::format("grid.{} makes more than {:.0f} settings", path, kMaxRuns));
      const auto short_name = path.substr(path.rfind('.') + 1);
      std::vector<Setting> expanded;
      for (const auto& setting : settings) {
        for (const auto& value : entry.second) {
          Setting next = setting;
          next.suffix += " " + short_name + "=" + YAML::Dump(value);
          next.values.emplace_back(path, value);
          expanded.push_back(next);
        }
      }
      settings = expanded;
    }
  }
  root.check_no_unknown_keys();
  const double run_count = static_cast<double>(settings.size()) * optimizers.size() *
                           multipliers.size() * seeds.size();
  sweep.check(run_count <= kMaxRuns, "",
              fmt::format("{:.0f} runs (grid x optimizers x lr_multipliers x seeds), more than "
                          "the limit of {:.0f}", run_count, kMaxRuns));

  std::set<std::string> ids;
  for (const auto& setting : settings) {
    for (const auto& [entry_label, section] : optimizers) {
      SweepArm arm;
      arm.label = entry_label + setting.suffix;
      arm.entry_label = entry_label;
      arm.workload = setting.suffix.empty() ? "" : setting.suffix.substr(1);
      arm.config = shallow_copy(config);
      arm.config.remove("sweep");
      for (const auto& [path, value] : setting.values) {
        try {
          set_in_copy(arm.config, path, value);
        } catch (const ConfigError& e) {
          grid.fail(path, e.what());
        }
      }
      replace(arm.config, "optimizer", section);
      for (double multiplier : multipliers) {
        for (uint64_t seed : seeds) {
          auto run = detail::make_run(arm, multiplier, seed, plan.tune ? "tune" : "");
          sweep.check(ids.insert(run.id).second, "",
                      "two runs would share the directory runs/" + run.id +
                          ": make labels, lr_multipliers, seeds and grid values distinct");
          plan.runs.push_back(run);
        }
      }
      plan.arms.push_back(arm);
    }
  }
  return plan;
}

}  // namespace blockopt::experiments
