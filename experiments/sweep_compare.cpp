// Aggregating a sweep's finished runs into comparison.json (sweep.h: compare_sweep): per
// optimizer and lr multiplier, statistics over seeds and the best learning rate.
#include <blockopt/experiments/detail/sweep.h>
#include <blockopt/experiments/sweep.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <optional>

namespace blockopt::experiments {

namespace detail {

nlohmann::json read_json_or_null(const fs::path& path) {
  if (!fs::exists(path)) return nullptr;
  auto parsed = nlohmann::json::parse(read_file(path), nullptr, false);
  return parsed.is_discarded() ? nlohmann::json(nullptr) : parsed;
}

}  // namespace detail

namespace {

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
    auto summary = detail::read_json_or_null(run_dir / "summary.json");
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
