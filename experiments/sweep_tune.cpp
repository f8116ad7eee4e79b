// A tuned sweep's next runs (sweep.h: SweepTune): an outward lr while the best is on an edge,
// then the final seeds at the best lr.
#include <blockopt/experiments/detail/sweep.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>

namespace blockopt::experiments::detail {

void add_seed_result(SeedResults& results, const nlohmann::json& summary) {
  const std::string status = summary.is_object() ? summary.value("status", "") : "";
  if (status == "completed") {
    ++results.completed;
    if (summary.contains("final_eval")) results.final_eval.push_back(summary["final_eval"]["loss"]);
  } else if (status == "diverged") {
    ++results.diverged;
  } else {
    ++results.failed;
  }
}

std::optional<double> best_lr_multiplier(const std::map<double, SeedResults>& by_multiplier) {
  std::optional<double> best;
  double best_mean = std::numeric_limits<double>::infinity();
  for (const auto& [multiplier, results] : by_multiplier) {
    if (results.final_eval.empty() || results.diverged > 0 || results.failed > 0) continue;
    double mean = 0.0;
    for (double loss : results.final_eval) mean += loss / static_cast<double>(results.final_eval.size());
    if (mean < best_mean) {
      best_mean = mean;
      best = multiplier;
    }
  }
  return best;
}

namespace {

int lr_log2(double multiplier) { return static_cast<int>(std::lround(std::log2(multiplier))); }

}  // namespace

bool extend_tuning(SweepPlan& plan, const fs::path& dir) {
  if (!plan.tune) return false;
  const auto& tune = *plan.tune;
  std::vector<SweepRun> next;
  for (const auto& arm : plan.arms) {
    std::map<double, SeedResults> by_multiplier;
    bool has_final = false, all_ended = true;
    for (const auto& run : plan.runs) {
      if (run.optimizer_label != arm.label) continue;
      if (run.stage == "final") {
        has_final = true;
        continue;
      }
      const auto summary = read_json_or_null(dir / "runs" / run.id / "summary.json");
      all_ended = all_ended && summary.is_object();
      add_seed_result(by_multiplier[run.lr_multiplier], summary);
    }
    if (has_final || !all_ended || by_multiplier.empty()) continue;
    const int low = lr_log2(by_multiplier.begin()->first);
    const int high = lr_log2(by_multiplier.rbegin()->first);
    const auto best = best_lr_multiplier(by_multiplier);
    // Every lr diverged or crashed: a smaller one is the only way on.
    const int best_k = best ? lr_log2(*best) : low;
    std::optional<int> outward;
    if (best_k == low && low > tune.bound_low) outward = low - 1;
    else if (best && best_k == high && high < tune.bound_high) outward = high + 1;
    if (outward) {
      spdlog::info("sweep {}: {}'s best lr is on the edge (2^{} x); adding 2^{} x", plan.name,
                   arm.label, best_k, *outward);
      for (uint64_t seed : tune.tuning_seeds) {
        next.push_back(make_run(arm, std::ldexp(1.0, *outward), seed, "tune"));
      }
      continue;
    }
    if (!best) {
      spdlog::warn("sweep {}: every lr of {} down to 2^{} x diverged or crashed; no final runs",
                   plan.name, arm.label, low);
      continue;
    }
    if (best_k == low || best_k == high) {
      spdlog::warn("sweep {}: {}'s best lr (2^{} x) is on the bound of extend_to", plan.name,
                   arm.label, best_k);
    }
    spdlog::info("sweep {}: {}'s best lr is 2^{} x; {} final seeds", plan.name, arm.label, best_k,
                 tune.final_seeds.size());
    for (uint64_t seed : tune.final_seeds) next.push_back(make_run(arm, *best, seed, "final"));
  }
  plan.runs.insert(plan.runs.end(), next.begin(), next.end());
  return !next.empty();
}

}  // namespace blockopt::experiments::detail
