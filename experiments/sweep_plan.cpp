// Expanding a sweep config into its runs (sweep.h: plan_sweep).
#include <blockopt/experiments/config.h>
#include <blockopt/experiments/sweep.h>

#include <fmt/format.h>

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

}  // namespace

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
  for (const auto& setting : settings)
  for (const auto& [optimizer_label, section] : optimizers) {
    const std::string label = optimizer_label + setting.suffix;
    for (double multiplier : multipliers) {
      for (uint64_t seed : seeds) {
        SweepRun run;
        run.id = run_id(label, multiplier, seed);
        sweep.check(ids.insert(run.id).second, "",
                    "two runs would share the directory runs/" + run.id +
                        ": make labels, lr_multipliers, seeds and grid values distinct");
        run.optimizer_label = label;
        run.lr_multiplier = multiplier;
        run.seed = seed;
        run.config = shallow_copy(config);
        run.config.remove("sweep");
        for (const auto& [path, value] : setting.values) {
          try {
            set_in_copy(run.config, path, value);
          } catch (const ConfigError& e) {
            grid.fail(path, e.what());
          }
        }
        replace(run.config, "name", YAML::Node(run.id));
        replace(run.config, "seed", YAML::Node(seed));
        replace(run.config, "optimizer", scaled_lrs(section, multiplier));
        plan.runs.push_back(run);
      }
    }
  }
  return plan;
}

}  // namespace blockopt::experiments
