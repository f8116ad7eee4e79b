// Aggregating a sweep's finished runs into comparison.json (sweep.h: compare_sweep): per
// optimizer and lr multiplier, statistics over seeds (95% intervals) and the best learning
// rate; per optimizer, the final statistics; per pair, Welch's test and a verdict; across
// workloads, the performance profile.
#include <blockopt/experiments/detail/sweep.h>
#include <blockopt/experiments/statistics.h>
#include <blockopt/experiments/sweep.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>

namespace blockopt::experiments {

namespace detail {

nlohmann::json read_json_or_null(const fs::path& path) {
  if (!fs::exists(path)) return nullptr;
  auto parsed = nlohmann::json::parse(read_file(path), nullptr, false);
  return parsed.is_discarded() ? nlohmann::json(nullptr) : parsed;
}

}  // namespace detail

namespace {

// Mean, sample standard deviation, the 95% confidence interval's half width (null for one
// value), min, max and count over seeds; null without values.
nlohmann::json stats_json(const std::vector<double>& values) {
  if (values.empty()) return nullptr;
  const auto interval = mean_interval(values);
  return {{"mean", interval.mean}, {"std", interval.sd},
          {"ci95", std::isnan(interval.half_width) ? nlohmann::json(nullptr) : nlohmann::json(interval.half_width)},
          {"min", *std::min_element(values.begin(), values.end())},
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

// The seeds of one optimizer at one lr.
struct Cell {
  double lr = 0.0, multiplier = 1.0;
  detail::SeedResults seeds;
  std::vector<double> best_eval, steps_to_target, time_to_target, peak_rss, state_bytes;
  int missed_target = 0;
};

// One optimizer label: its lr grid (a tuned sweep's tuning runs) and its final seeds.
struct Arm {
  std::string entry, workload;
  std::map<double, Cell> grid;
  std::optional<Cell> final;  // a tuned sweep's final stage
};

nlohmann::json cell_json(const Cell& cell) {
  return {{"lr_multiplier", cell.multiplier}, {"lr", cell.lr}, {"completed", cell.seeds.completed},
          {"diverged", cell.seeds.diverged}, {"failed", cell.seeds.failed},
          {"missed_target", cell.missed_target},
          {"final_eval_loss", stats_json(cell.seeds.final_eval)},
          {"best_eval_loss", stats_json(cell.best_eval)},
          {"steps_to_target", stats_json(cell.steps_to_target)},
          {"time_to_target", stats_json(cell.time_to_target)},
          {"peak_rss_bytes", stats_json(cell.peak_rss)},
          {"optimizer_state_bytes", stats_json(cell.state_bytes)}};
}

// The modded-nanogpt record rule: a mean over n seeds reaches the target when
// (target - mean) sqrt(n) >= 0.004.
constexpr double kTargetRuleMargin = 0.004;

// The statistics a comparison rests on: those of the final seeds (or, untuned, the best lr's).
nlohmann::json final_json(const Cell& cell, double target, const std::string& source) {
  auto out = cell_json(cell);
  out["source"] = source;
  const int seeds = cell.seeds.completed + cell.seeds.diverged + cell.seeds.failed;
  out["seeds"] = seeds;
  if (target > 0.0) {
    out["reached_target"] = seeds > 0 ? static_cast<double>(cell.steps_to_target.size()) / seeds : 0.0;
    if (!cell.seeds.final_eval.empty()) {
      const double n = static_cast<double>(cell.seeds.final_eval.size());
      const double value = (target - out["final_eval_loss"]["mean"].get<double>()) * std::sqrt(n);
      out["target_rule"] = {{"value", value}, {"passed", value >= kTargetRuleMargin}};
    }
  }
  return out;
}

// "A beats B at 95%" or "no significant difference", from Welch's test on final eval losses.
nlohmann::json pairwise_json(const std::string& a, const std::vector<double>& loss_a,
                             const std::string& b, const std::vector<double>& loss_b) {
  nlohmann::json out = {{"a", a}, {"b", b}, {"n_a", loss_a.size()}, {"n_b", loss_b.size()}};
  if (loss_a.size() < 2 || loss_b.size() < 2) {
    out["verdict"] = fmt::format("{} vs {}: too few completed seeds for a test ({} and {})", a, b,
                                 loss_a.size(), loss_b.size());
    return out;
  }
  const auto test = welch_t_test(loss_a, loss_b);
  out["p_value"] = test.p_value;
  out["effect_size"] = test.effect_size;
  out["t"] = test.t;
  out["dof"] = test.dof;
  const bool a_lower = test.t < 0;
  out["verdict"] = test.p_value < 0.05
                       ? fmt::format("{} beats {} at 95% (final eval loss, Welch p = {:.2g}, d = {:.2f})",
                                     a_lower ? a : b, a_lower ? b : a, test.p_value,
                                     std::fabs(test.effect_size))
                       : fmt::format("no significant difference between {} and {} (Welch p = {:.2g})",
                                     a, b, test.p_value);
  return out;
}

// AlgoPerf's performance profile over workloads: rho_o(tau) = the fraction of workloads on
// which optimizer o reaches the target within tau x the fastest optimizer's time (mean over
// seeds; an optimizer whose seeds did not all reach it never counts).
nlohmann::json performance_profile(const std::map<std::string, Arm>& arms,
                                   const nlohmann::json& optimizers) {
  std::map<std::string, std::map<std::string, double>> seconds;  // workload -> entry -> time
  std::set<std::string> entries;
  for (const auto& [label, arm] : arms) {
    entries.insert(arm.entry);
    const auto& stats = optimizers[label]["final"];
    const bool all_reached = stats.is_object() && stats.value("reached_target", 0.0) == 1.0;
    seconds[arm.workload][arm.entry] = all_reached ? stats["time_to_target"]["mean"].get<double>()
                                                   : std::numeric_limits<double>::infinity();
  }
  const std::vector<double> taus = {1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0};
  nlohmann::json out = {{"tau", taus}, {"workloads", nlohmann::json::array()},
                        {"optimizers", nlohmann::json::object()}};
  for (const auto& [workload, times] : seconds) out["workloads"].push_back(workload);
  for (const auto& entry : entries) {
    nlohmann::json ratios = nlohmann::json::object();
    std::vector<double> fraction(taus.size(), 0.0);
    for (const auto& [workload, times] : seconds) {
      double fastest = std::numeric_limits<double>::infinity();
      for (const auto& [other, t] : times) fastest = std::min(fastest, t);
      const auto mine = times.find(entry);
      const double ratio = mine != times.end() && std::isfinite(mine->second) ? mine->second / fastest
                                                                               : std::numeric_limits<double>::infinity();
      ratios[workload] = std::isfinite(ratio) ? nlohmann::json(ratio) : nlohmann::json(nullptr);
      for (size_t i = 0; i < taus.size(); ++i) {
        if (ratio <= taus[i]) fraction[i] += 1.0 / static_cast<double>(seconds.size());
      }
    }
    out["optimizers"][entry] = {{"ratios", ratios}, {"fraction", fraction}};
  }
  return out;
}

}  // namespace

nlohmann::json compare_sweep(const fs::path& dir) {
  const auto index = nlohmann::json::parse(read_file(dir / "sweep.json"));
  const double target = index.value("target_loss", 0.0);
  std::map<std::string, Arm> arms;
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& run : index["runs"]) {
    const auto run_dir = dir / "runs" / run["id"].get<std::string>();
    auto summary = detail::read_json_or_null(run_dir / "summary.json");
    const std::string label = run["optimizer"];
    auto& arm = arms[label];
    arm.entry = run.value("entry", label);
    arm.workload = run.value("workload", "");
    const double multiplier = run["lr_multiplier"].get<double>();
    Cell& cell = run.value("stage", "") == "final" ? (arm.final ? *arm.final : arm.final.emplace())
                                                   : arm.grid[multiplier];
    cell.lr = run["lr"];
    cell.multiplier = multiplier;
    const std::string status = summary.is_object() ? summary.value("status", "missing") : "missing";
    runs.push_back({{"id", run["id"]}, {"status", status}, {"stage", run.value("stage", "")},
                    {"message", summary.is_object() ? summary.value("message", "") : "no summary"}});
    detail::add_seed_result(cell.seeds, summary);
    if (status != "completed") continue;
    if (summary.contains("best_eval")) cell.best_eval.push_back(summary["best_eval"]["loss"]);
    cell.peak_rss.push_back(summary.value("peak_rss_bytes", 0.0));
    cell.state_bytes.push_back(summary.value("optimizer_state_bytes", 0.0));
    if (auto hit = time_to_target(run_dir / "metrics.jsonl", target)) {
      cell.steps_to_target.push_back(static_cast<double>(hit->first));
      cell.time_to_target.push_back(hit->second);
    } else if (target > 0.0) {
      ++cell.missed_target;
    }
  }
  nlohmann::json optimizers = nlohmann::json::object();
  std::map<std::string, std::vector<std::string>> by_workload;  // workload -> labels
  std::map<std::string, std::vector<double>> final_losses;      // label -> the final cell's
  for (const auto& [label, arm] : arms) {
    by_workload[arm.workload].push_back(label);
    nlohmann::json grid = nlohmann::json::array();
    std::map<double, detail::SeedResults> seeds;
    for (const auto& [multiplier, cell] : arm.grid) {
      grid.push_back(cell_json(cell));
      seeds[multiplier] = cell.seeds;
    }
    // The best lr must have every seed finished: a diverged seed disqualifies it.
    const auto best = detail::best_lr_multiplier(seeds);
    nlohmann::json entry = {{"entry", arm.entry}, {"workload", arm.workload}, {"grid", grid},
                            {"best", best ? cell_json(arm.grid.at(*best)) : nlohmann::json(nullptr)}};
    // An lr grid of one point tunes nothing, so it has no edge to flag.
    entry["best_on_edge"] = best && arm.grid.size() > 1 &&
                            (*best == arm.grid.begin()->first || *best == arm.grid.rbegin()->first);
    // The cell the comparison rests on: the final seeds, or untuned the best lr's seeds.
    const Cell* final_cell = arm.final ? &*arm.final : best ? &arm.grid.at(*best) : nullptr;
    entry["final"] = final_cell ? final_json(*final_cell, target,
                                             arm.final ? "final seeds at the best lr" : "the best lr's seeds")
                                : nlohmann::json(nullptr);
    final_losses[label] = final_cell ? final_cell->seeds.final_eval : std::vector<double>{};
    optimizers[label] = entry;
  }
  nlohmann::json pairwise = nlohmann::json::array();
  for (const auto& [workload, labels] : by_workload) {
    for (size_t i = 0; i < labels.size(); ++i) {
      for (size_t j = i + 1; j < labels.size(); ++j) {
        auto pair = pairwise_json(labels[i], final_losses.at(labels[i]), labels[j],
                                  final_losses.at(labels[j]));
        pair["workload"] = workload;
        pairwise.push_back(pair);
      }
    }
  }
  nlohmann::json out = {{"name", index["name"]}, {"target_loss", target}, {"optimizers", optimizers},
                        {"pairwise", pairwise}, {"runs", runs}};
  if (index.contains("tune")) out["tune"] = index["tune"];
  if (by_workload.size() > 1 && target > 0.0) out["performance_profile"] = performance_profile(arms, optimizers);
  return out;
}

}  // namespace blockopt::experiments
