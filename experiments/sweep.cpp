#include <blockopt/experiments/config.h>
#include <blockopt/experiments/process.h>
#include <blockopt/experiments/sweep.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <system_error>

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

namespace {

std::string yaml_text(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return std::string(out.c_str()) + "\n";
}

nlohmann::json read_json_or_null(const fs::path& path) {
  if (!fs::exists(path)) return nullptr;
  auto parsed = nlohmann::json::parse(read_file(path), nullptr, false);
  return parsed.is_discarded() ? nlohmann::json(nullptr) : parsed;
}

// Starts `blockopt_exe run <run_dir>/config.yaml --out <run_dir> --no-progress` with its
// stdout and stderr appended to <run_dir>/run.log; returns its pid, or nothing (logging why)
// when it cannot start.
std::optional<pid_t> start_run(const std::string& blockopt_exe, const fs::path& run_dir) {
  try {
    return spawn_logged({blockopt_exe, "run", (run_dir / "config.yaml").string(), "--out",
                         run_dir.string(), "--no-progress"},
                        run_dir / "run.log", /*append=*/true);
  } catch (const std::system_error& error) {
    spdlog::error("{} for {}", error.what(), run_dir.string());
    return std::nullopt;
  }
}

}  // namespace

SweepOutcome run_sweep(const SweepPlan& plan, const fs::path& dir, const std::string& blockopt_exe) {
  fs::create_directories(dir / "runs");
  nlohmann::json index = {{"name", plan.name}, {"target_loss", plan.target_loss}, {"runs", nlohmann::json::array()}};
  for (const auto& run : plan.runs) {
    index["runs"].push_back({{"id", run.id}, {"optimizer", run.optimizer_label},
                             {"lr_multiplier", run.lr_multiplier}, {"seed", run.seed},
                             {"lr", run.config["optimizer"]["lr"] ? run.config["optimizer"]["lr"].as<double>() : 0.0}});
  }
  write_file_atomic(dir / "sweep.json", index.dump(2) + "\n");

  // Runs still to do; each writes its config where `blockopt run` expects it.
  std::vector<size_t> todo;
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    const auto run_dir = dir / "runs" / plan.runs[i].id;
    auto summary = read_json_or_null(run_dir / "summary.json");
    if (summary.is_object() && summary.value("status", "") == "completed") continue;
    fs::create_directories(run_dir);
    write_file_atomic(run_dir / "config.yaml", yaml_text(plan.runs[i].config));
    todo.push_back(i);
  }
  spdlog::info("sweep {}: {} runs, {} to do, {} at a time", plan.name, plan.runs.size(), todo.size(),
               plan.parallel);

  std::map<pid_t, size_t> active;
  std::map<size_t, int> exit_codes;
  auto reap_one = [&] {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid <= 0 || !active.count(pid)) return;
    exit_codes[active[pid]] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    active.erase(pid);
  };
  for (size_t i : todo) {
    while (static_cast<int>(active.size()) >= plan.parallel) reap_one();
    const auto run_dir = dir / "runs" / plan.runs[i].id;
    spdlog::info("sweep {}: starting {}", plan.name, plan.runs[i].id);
    if (const auto pid = start_run(blockopt_exe, run_dir)) {
      active[*pid] = i;
    } else {
      exit_codes[i] = 127;  // a shell's code for a command it cannot run; recorded as failed below
    }
  }
  while (!active.empty()) reap_one();

  SweepOutcome outcome;
  outcome.dir = dir;
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    const auto run_dir = dir / "runs" / plan.runs[i].id;
    auto summary = read_json_or_null(run_dir / "summary.json");
    const std::string status = summary.is_object() ? summary.value("status", "failed") : "failed";
    if (status == "completed") ++outcome.completed;
    else if (status == "diverged") ++outcome.diverged;
    else {
      ++outcome.failed;
      // A crash leaves no summary: record it (with the exit code) so it is never dropped.
      nlohmann::json failed = {{"name", plan.runs[i].id}, {"status", "failed"},
                               {"message", fmt::format("process exited with code {}; see run.log",
                                                       exit_codes.count(i) ? exit_codes[i] : -1)}};
      write_file_atomic(run_dir / "summary.json", failed.dump(2) + "\n");
    }
  }
  write_file_atomic(dir / "comparison.json", compare_sweep(dir).dump(2) + "\n");
  return outcome;
}

namespace {

struct Stats {
  double mean = 0, std = 0, min = 0, max = 0;
  int count = 0;
};

nlohmann::json stats_json(std::vector<double> values) {
  if (values.empty()) return nullptr;
  const double n = static_cast<double>(values.size());
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double var = 0.0;
  for (double v : values) var += (v - mean) * (v - mean);
  // Sample standard deviation across seeds (0 for one seed).
  const double std = values.size() > 1 ? std::sqrt(var / (n - 1)) : 0.0;
  return {{"mean", mean}, {"std", std}, {"min", *std::min_element(values.begin(), values.end())},
          {"max", *std::max_element(values.begin(), values.end())}, {"count", values.size()}};
}

// First evaluation whose loss is <= target: (step, wall time).
std::optional<std::pair<int64_t, double>> time_to_target(const fs::path& metrics, double target) {
  if (target <= 0.0) return std::nullopt;
  for (const auto& record : read_jsonl(metrics)) {
    if (!record.contains("eval_loss")) continue;
    if (record["eval_loss"].get<double>() <= target) {
      return std::make_pair(record["step"].get<int64_t>(), record.value("wall_time", 0.0));
    }
  }
  return std::nullopt;
}

}  // namespace

nlohmann::json compare_sweep(const fs::path& dir) {
  const auto index = nlohmann::json::parse(read_file(dir / "sweep.json"));
  const double target = index.value("target_loss", 0.0);
  // (optimizer, multiplier) -> per-seed values
  struct Cell {
    double lr = 0.0;
    std::vector<double> final_eval, best_eval, steps_to_target, time_to_target, peak_rss, state_bytes;
    int completed = 0, diverged = 0, failed = 0, missed_target = 0;
  };
  std::map<std::string, std::map<double, Cell>> cells;
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& run : index["runs"]) {
    const auto run_dir = dir / "runs" / run["id"].get<std::string>();
    auto summary = read_json_or_null(run_dir / "summary.json");
    auto& cell = cells[run["optimizer"]][run["lr_multiplier"].get<double>()];
    cell.lr = run["lr"];
    const std::string status = summary.is_object() ? summary.value("status", "missing") : "missing";
    runs.push_back({{"id", run["id"]}, {"status", status},
                    {"message", summary.is_object() ? summary.value("message", "") : "no summary"}});
    if (status == "completed") {
      ++cell.completed;
      if (summary.contains("final_eval")) cell.final_eval.push_back(summary["final_eval"]["loss"]);
      if (summary.contains("best_eval")) cell.best_eval.push_back(summary["best_eval"]["loss"]);
      cell.peak_rss.push_back(summary.value("peak_rss_bytes", 0.0));
      cell.state_bytes.push_back(summary.value("optimizer_state_bytes", 0.0));
      if (auto hit = time_to_target(run_dir / "metrics.jsonl", target)) {
        cell.steps_to_target.push_back(static_cast<double>(hit->first));
        cell.time_to_target.push_back(hit->second);
      } else if (target > 0.0) {
        ++cell.missed_target;
      }
    } else if (status == "diverged") {
      ++cell.diverged;
    } else {
      ++cell.failed;
    }
  }
  nlohmann::json optimizers = nlohmann::json::object();
  for (const auto& [label, by_multiplier] : cells) {
    nlohmann::json grid = nlohmann::json::array();
    double best_mean = std::numeric_limits<double>::infinity();
    nlohmann::json best;
    for (const auto& [multiplier, cell] : by_multiplier) {
      nlohmann::json entry = {
          {"lr_multiplier", multiplier}, {"lr", cell.lr}, {"completed", cell.completed},
          {"diverged", cell.diverged}, {"failed", cell.failed}, {"missed_target", cell.missed_target},
          {"final_eval_loss", stats_json(cell.final_eval)}, {"best_eval_loss", stats_json(cell.best_eval)},
          {"steps_to_target", stats_json(cell.steps_to_target)},
          {"time_to_target", stats_json(cell.time_to_target)},
          {"peak_rss_bytes", stats_json(cell.peak_rss)},
          {"optimizer_state_bytes", stats_json(cell.state_bytes)}};
      // The best lr must have every seed finished: a diverged seed disqualifies it.
      if (!cell.final_eval.empty() && cell.diverged == 0 && cell.failed == 0 &&
          entry["final_eval_loss"]["mean"].get<double>() < best_mean) {
        best_mean = entry["final_eval_loss"]["mean"];
        best = entry;
      }
      grid.push_back(entry);
    }
    optimizers[label] = {{"grid", grid}, {"best", best}};
  }
  return {{"name", index["name"]}, {"target_loss", target}, {"optimizers", optimizers}, {"runs", runs}};
}

}  // namespace blockopt::experiments
