#include <blockopt/experiments/config.h>
#include <blockopt/experiments/detail/sweep.h>
#include <blockopt/experiments/process.h>
#include <blockopt/experiments/report.h>
#include <blockopt/experiments/run.h>
#include <blockopt/experiments/statistics.h>
#include <blockopt/experiments/sweep.h>

#include <gmock/gmock.h>
#include "common.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

namespace ex = blockopt::experiments;
namespace fs = std::filesystem;
using ::testing::HasSubstr;

namespace {

const char* kSweep = R"(name: s
data: {type: gaussian, samples: 64, dim: 4, classes: 3}
model: {type: linear}
train: {steps: 3}
sweep:
  optimizers:
    - {name: muon, lr: 0.02, fallback: {lr: 0.004}}
    - {name: adamw, lr: 0.001}
    - {name: adamw, lr: 0.01, label: adamw-big}
  lr_multipliers: [0.5, 2]
  seeds: [0, 1]
  target_loss: 1.0
)";

using blockopt::test::fresh_dir;

std::string plan_error(const std::string& yaml) {
  try {
    ex::plan_sweep(YAML::Load(yaml), "sweep.yaml");
  } catch (const ex::ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for\n" << yaml;
  return {};
}

// A finished run without its process: summary.json and, with hit_step > 0, an eval record at
// loss 0.9 (the targets below are 1.0) at that step and at wall time hit_step / 10.
void write_fake_run(const fs::path& run_dir, const std::string& status, double final_loss,
                    double hit_step = -1) {
  fs::create_directories(run_dir);
  nlohmann::json summary = {{"status", status}, {"message", status == "diverged" ? "loss is NaN" : ""},
                            {"optimizer_state_bytes", 100}, {"peak_rss_bytes", 1 << 20}};
  if (status == "completed") summary["final_eval"] = {{"loss", final_loss}, {"step", 30}};
  ex::write_file_atomic(run_dir / "summary.json", summary.dump());
  std::string metrics = R"({"step":10,"eval_loss":1.5,"wall_time":1.0})" "\n";
  if (hit_step > 0) {
    metrics += nlohmann::json{{"step", hit_step}, {"eval_loss", 0.9}, {"wall_time", hit_step / 10}}.dump() + "\n";
  }
  ex::write_file_atomic(run_dir / "metrics.jsonl", metrics);
}

}  // namespace

TEST(SweepTest, ExpandsOptimizersLrMultipliersAndSeeds) {
  const auto plan = ex::plan_sweep(YAML::Load(kSweep), "sweep.yaml");
  ASSERT_EQ(plan.runs.size(), 3u * 2u * 2u);
  EXPECT_DOUBLE_EQ(plan.target_loss, 1.0);
  const auto& first = plan.runs.front();
  EXPECT_EQ(first.id, "muon-lr0.5x-s0");
  EXPECT_EQ(first.config["seed"].as<uint64_t>(), 0u);
  // Every lr of the optimizer section is scaled, the fallback's too.
  EXPECT_DOUBLE_EQ(first.config["optimizer"]["lr"].as<double>(), 0.01);
  EXPECT_DOUBLE_EQ(first.config["optimizer"]["fallback"]["lr"].as<double>(), 0.002);
  EXPECT_FALSE(first.config["sweep"]);
  const auto& last = plan.runs.back();
  EXPECT_EQ(last.id, "adamw-big-lr2x-s1");
  EXPECT_FALSE(last.config["optimizer"]["label"]);  // label is the sweep's, not the optimizer's
  EXPECT_DOUBLE_EQ(last.config["optimizer"]["lr"].as<double>(), 0.02);
  // Each expanded run is a valid run config.
  for (const auto& run : plan.runs) EXPECT_NO_THROW(ex::build_experiment(run.config, run.id));
}

TEST(SweepTest, GridExpandsAnyConfigValue) {
  const auto plan = ex::plan_sweep(YAML::Load(R"(name: c
data: {type: gaussian, samples: 64, dim: 4, classes: 3}
model: {type: linear}
optimizer: {name: adam, lr: 0.01}
sweep:
  grid: {data.classes: [2, 10], model.init: [lecun_normal, pytorch_default]}
)"), "grid.yaml");
  ASSERT_EQ(plan.runs.size(), 4u);
  EXPECT_EQ(plan.runs[0].id, "adam-classes_2-init_lecun_normal-lr1x-s0");
  EXPECT_EQ(plan.runs[0].optimizer_label, "adam classes=2 init=lecun_normal");
  EXPECT_EQ(plan.runs[3].config["data"]["classes"].as<int>(), 10);
  EXPECT_EQ(plan.runs[3].config["model"]["init"].as<std::string>(), "pytorch_default");
  EXPECT_EQ(plan.runs[3].config["data"]["samples"].as<int>(), 64);
  EXPECT_THAT(plan_error("name: c\noptimizer: {name: adam}\nsweep: {grid: {data.classes: 3}}\n"),
              HasSubstr("must be a non-empty list"));
}

TEST(SweepTest, ConfigErrorsNameTheSweepKey) {
  EXPECT_THAT(plan_error("name: s\noptimizer: {name: adamw}\nsweep: {seedz: [1]}\n"),
              HasSubstr("sweep.seedz (line 3): unknown key"));
  EXPECT_THAT(plan_error("name: s\nsweep:\n  optimizers: [{name: adamw}, {name: adamw}]\n"),
              HasSubstr("duplicate optimizer label 'adamw'"));
  EXPECT_THAT(plan_error("name: s\noptimizer: {name: adamw}\nsweep: {lr_multipliers: [1, -2]}\n"),
              HasSubstr("sweep.lr_multipliers"));
}

TEST(SweepTest, ComparisonAggregatesSeedsAndRecordsFailures) {
  const auto dir = fresh_dir("compare");
  nlohmann::json index = {{"name", "s"}, {"target_loss", 1.0}, {"runs", nlohmann::json::array()}};
  // adamw at multiplier 1: two seeds finish; at multiplier 2 one seed diverges.
  struct Fake { std::string id; double mult; std::string status; double final_loss; double hit_step; };
  std::vector<Fake> runs = {{"a-1-s0", 1, "completed", 0.8, 20},
                            {"a-1-s1", 1, "completed", 1.2, -1},
                            {"a-2-s0", 2, "completed", 0.5, 10},
                            {"a-2-s1", 2, "diverged", 0, -1}};
  for (const auto& r : runs) {
    index["runs"].push_back({{"id", r.id}, {"optimizer", "adamw"}, {"lr_multiplier", r.mult},
                             {"seed", 0}, {"lr", 0.001 * r.mult}});
    write_fake_run(dir / "runs" / r.id, r.status, r.final_loss, r.hit_step);
  }
  ex::write_file_atomic(dir / "sweep.json", index.dump());
  const auto c = ex::compare_sweep(dir);
  const auto& grid = c["optimizers"]["adamw"]["grid"];
  ASSERT_EQ(grid.size(), 2u);
  EXPECT_DOUBLE_EQ(grid[0]["final_eval_loss"]["mean"].get<double>(), 1.0);
  EXPECT_NEAR(grid[0]["final_eval_loss"]["std"].get<double>(), std::sqrt(0.08), 1e-12);
  EXPECT_EQ(grid[0]["missed_target"], 1);
  EXPECT_DOUBLE_EQ(grid[0]["steps_to_target"]["mean"].get<double>(), 20.0);
  EXPECT_DOUBLE_EQ(grid[0]["time_to_target"]["mean"].get<double>(), 2.0);
  EXPECT_EQ(grid[1]["diverged"], 1);
  // The lower loss at multiplier 2 does not count: one of its seeds diverged.
  EXPECT_DOUBLE_EQ(c["optimizers"]["adamw"]["best"]["lr_multiplier"].get<double>(), 1.0);
  EXPECT_EQ(c["runs"][3]["status"], "diverged");

  const auto report = ex::write_report(dir);
  const auto html = ex::read_file(report);
  EXPECT_THAT(html, HasSubstr(R"(<div class="chart">)"));
  EXPECT_THAT(html, HasSubstr("a-2-s1"));
  EXPECT_THAT(html, HasSubstr("loss is NaN"));
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);  // offline: nothing is fetched
  EXPECT_TRUE(fs::exists(dir / "comparison.json"));
}

// Per optimizer: the mean with its t interval, the fraction of seeds at the target and the
// modded-nanogpt rule; per pair, Welch's test (statistics.h, tested on its own) and a verdict
// that follows its p-value; across two workloads, the performance profile.
TEST(SweepTest, ComparisonTestsOptimizerPairsAndProfilesWorkloads) {
  const auto dir = fresh_dir("compare_stats");
  nlohmann::json index = {{"name", "s"}, {"target_loss", 1.0}, {"runs", nlohmann::json::array()}};
  // label -> (workload, final losses, steps at which each seed reached the target, -1 = never)
  struct Fake { std::string entry, workload; std::vector<double> loss, hit; };
  const std::vector<Fake> fakes = {{"a", "w=1", {0.90, 0.95, 0.85}, {10, 20, 30}},
                                   {"b", "w=1", {1.20, 1.30, 1.10}, {40, -1, 60}},
                                   {"c", "w=1", {0.92, 0.80, 0.98}, {20, 20, 20}},
                                   {"a", "w=2", {0.50, 0.60, 0.55}, {50, 50, 50}},
                                   {"b", "w=2", {0.50, 0.60, 0.55}, {10, 10, 10}},
                                   {"c", "w=2", {0.50, 0.60, 0.55}, {-1, 10, 10}}};
  for (const auto& fake : fakes) {
    for (size_t seed = 0; seed < fake.loss.size(); ++seed) {
      const auto id = fake.entry + "-" + fake.workload + "-s" + std::to_string(seed);
      index["runs"].push_back({{"id", id}, {"optimizer", fake.entry + " " + fake.workload},
                               {"entry", fake.entry}, {"workload", fake.workload},
                               {"stage", ""}, {"lr_multiplier", 1.0}, {"seed", seed}, {"lr", 0.01}});
      write_fake_run(dir / "runs" / id, "completed", fake.loss[seed], fake.hit[seed]);
    }
  }
  ex::write_file_atomic(dir / "sweep.json", index.dump());
  const auto c = ex::compare_sweep(dir);
  const auto& b = c["optimizers"]["b w=1"]["final"];
  EXPECT_NEAR(b["final_eval_loss"]["mean"].get<double>(), 1.2, 1e-12);
  EXPECT_NEAR(b["final_eval_loss"]["ci95"].get<double>(), 4.302652729749461 * 0.1 / std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(b["reached_target"].get<double>(), 2.0 / 3.0, 1e-15);
  EXPECT_DOUBLE_EQ(b["steps_to_target"]["mean"].get<double>(), 50.0);
  EXPECT_NEAR(b["target_rule"]["value"].get<double>(), -0.2 * std::sqrt(3.0), 1e-12);
  EXPECT_FALSE(b["target_rule"]["passed"].get<bool>());
  EXPECT_TRUE(c["optimizers"]["a w=1"]["final"]["target_rule"]["passed"].get<bool>());
  // Pairs within a workload only: 3 per workload.
  ASSERT_EQ(c["pairwise"].size(), 6u);
  for (const auto& pair : c["pairwise"]) {
    if (pair["workload"] != "w=1") continue;
    const std::string a = pair["a"], other = pair["b"];
    const auto loss = [&](const std::string& label) {
      for (const auto& fake : fakes) {
        if (fake.entry + " " + fake.workload == label) return fake.loss;
      }
      return std::vector<double>{};
    };
    const auto test = ex::welch_t_test(loss(a), loss(other));
    EXPECT_DOUBLE_EQ(pair["p_value"].get<double>(), test.p_value);
    const std::string verdict = pair["verdict"];
    if (test.p_value < 0.05) {
      EXPECT_THAT(verdict, HasSubstr(" beats ")) << verdict;
    } else {
      EXPECT_THAT(verdict, HasSubstr("no significant difference")) << verdict;
    }
  }
  const auto verdict_of = [&](const std::string& a, const std::string& other) {
    for (const auto& pair : c["pairwise"]) {
      if (pair["a"] == a && pair["b"] == other) return pair["verdict"].get<std::string>();
    }
    return std::string("no such pair");
  };
  EXPECT_THAT(verdict_of("a w=1", "b w=1"), HasSubstr("a w=1 beats b w=1 at 95%"));
  EXPECT_THAT(verdict_of("a w=1", "c w=1"), HasSubstr("no significant difference"));
  EXPECT_THAT(verdict_of("a w=2", "b w=2"), HasSubstr("p = 1"));  // the same losses
  // Profile: w=1 times (mean of wall time = step / 10): a 2, b never (a seed missed), c 2;
  // w=2: a 5, b 1, c never. So a: ratios 1 and 5; b: never and 1; c: 1 and never.
  const auto& profile = c["performance_profile"];
  EXPECT_EQ(profile["workloads"], nlohmann::json({"w=1", "w=2"}));
  EXPECT_DOUBLE_EQ(profile["optimizers"]["a"]["ratios"]["w=2"].get<double>(), 5.0);
  EXPECT_TRUE(profile["optimizers"]["b"]["ratios"]["w=1"].is_null());
  const auto taus = profile["tau"].get<std::vector<double>>();
  const auto fraction_a = profile["optimizers"]["a"]["fraction"].get<std::vector<double>>();
  const auto fraction_b = profile["optimizers"]["b"]["fraction"].get<std::vector<double>>();
  for (size_t i = 0; i < taus.size(); ++i) {
    EXPECT_DOUBLE_EQ(fraction_a[i], taus[i] >= 5.0 ? 1.0 : 0.5) << taus[i];
    EXPECT_DOUBLE_EQ(fraction_b[i], 0.5) << taus[i];
  }
}

namespace {

const char* kTunedSweep = R"(name: t
data: {type: gaussian, samples: 32, dim: 4, classes: 3}
model: {type: linear}
train: {steps: 2}
sweep:
  optimizers:
    - {name: adamw, lr: 0.01, label: valley}
    - {name: muon, lr: 0.02, fallback: {lr: 0.004}, label: rising}
    - {name: adamw, lr: 0.01, label: unstable}
  seeds: [0, 1]
  tune: {lr_log2: [-1, 1], extend_to: [-3, 1], final_seeds: 2}
)";

// The fake final loss of a tuning run: "valley" is best at k = -2, "rising" gets better up to
// the bound k = 1, "unstable" diverges at k >= 0 and is best at k = -1.
std::string fake_tuning_run(const fs::path& dir, const ex::SweepRun& run) {
  const int k = static_cast<int>(std::lround(std::log2(run.lr_multiplier)));
  const double seed_noise = 0.01 * static_cast<double>(run.seed);
  std::string status = "completed";
  double loss = 0.0;
  if (run.optimizer_label == "valley") loss = 1.0 + (k + 2) * (k + 2) + seed_noise;
  if (run.optimizer_label == "rising") loss = 2.0 - k + seed_noise;
  if (run.optimizer_label == "unstable") {
    loss = 1.0 - k + seed_noise;
    if (k >= 0) status = "diverged";
  }
  write_fake_run(dir / "runs" / run.id, status, loss);
  return status;
}

}  // namespace

TEST(SweepTuneTest, PlansALog2GridAndFreshFinalSeeds) {
  const auto plan = ex::plan_sweep(YAML::Load(kTunedSweep), "t.yaml");
  ASSERT_TRUE(plan.tune.has_value());
  EXPECT_EQ(plan.tune->final_seeds, (std::vector<uint64_t>{2, 3}));
  ASSERT_EQ(plan.runs.size(), 3u * 3u * 2u);
  std::set<double> multipliers;
  for (const auto& run : plan.runs) {
    EXPECT_EQ(run.stage, "tune");
    multipliers.insert(run.lr_multiplier);
  }
  EXPECT_EQ(multipliers, (std::set<double>{0.5, 1.0, 2.0}));
  // The fallback lr moves with the matrix lr (a fixed ratio).
  for (const auto& run : plan.runs) {
    if (run.optimizer_label != "rising" || run.lr_multiplier != 0.5) continue;
    EXPECT_DOUBLE_EQ(run.config["optimizer"]["lr"].as<double>(), 0.01);
    EXPECT_DOUBLE_EQ(run.config["optimizer"]["fallback"]["lr"].as<double>(), 0.002);
  }
  // Five final seeds by default, after the largest tuning seed.
  const auto defaults = ex::plan_sweep(YAML::Load("name: d\noptimizer: {name: adamw}\n"
                                                  "sweep: {seeds: [3, 7], tune: {}}\n"), "d.yaml");
  EXPECT_EQ(defaults.tune->final_seeds, (std::vector<uint64_t>{8, 9, 10, 11, 12}));
  EXPECT_EQ(defaults.runs.size(), 7u * 2u);  // lr_log2 [-3, 3]
  EXPECT_THAT(plan_error("name: s\noptimizer: {name: adamw}\nsweep: {seeds: [0, 1], tune: {final_seeds: [1, 2]}}\n"),
              HasSubstr("seed 1 is also a tuning seed"));
  EXPECT_THAT(plan_error("name: s\noptimizer: {name: adamw}\nsweep: {lr_multipliers: [1], tune: {}}\n"),
              HasSubstr("remove lr_multipliers"));
  EXPECT_THAT(plan_error("name: s\noptimizer: {name: adamw}\nsweep: {tune: {lr_log2: [2, -2]}}\n"),
              HasSubstr("sweep.tune.lr_log2"));
  EXPECT_THAT(plan_error("name: s\noptimizer: {name: adamw}\nsweep: {tune: {lr_log2: [-2, 2], extend_to: [-1, 4]}}\n"),
              HasSubstr("enclosing lr_log2"));
}

// The stages of a tuned sweep, driven by fake results: each extension adds the next k outward
// for the tuning seeds, the best is then interior or on the bound, and the final seeds run there.
TEST(SweepTuneTest, ExtendsEdgesWithinTheBoundThenRunsFinalSeeds) {
  const auto dir = fresh_dir("sweep_tune_stages");
  auto plan = ex::plan_sweep(YAML::Load(kTunedSweep), "t.yaml");
  size_t finished = 0;
  std::vector<std::vector<std::string>> stages;
  while (true) {
    for (; finished < plan.runs.size(); ++finished) {
      const auto& run = plan.runs[finished];
      if (run.stage == "tune") fake_tuning_run(dir, run);
      else write_fake_run(dir / "runs" / run.id, "completed", 0.5);
    }
    const size_t before = plan.runs.size();
    if (!ex::detail::extend_tuning(plan, dir)) break;
    std::vector<std::string> added;
    for (size_t i = before; i < plan.runs.size(); ++i) added.push_back(plan.runs[i].id);
    stages.push_back(added);
    ASSERT_LT(stages.size(), 10u) << "the tuning does not end";
  }
  // Stage 1: valley and unstable are best at their lowest k = -1: both add k = -2; rising is
  // best at k = 1, the bound: its final seeds. Stage 2: valley is best at k = -2, the lowest:
  // it adds -3; unstable is best at -1, interior: finals. Stage 3: valley's finals at k = -2.
  ASSERT_EQ(stages.size(), 3u);
  EXPECT_THAT(stages[0], ::testing::UnorderedElementsAre(
                             "valley-lr0.25x-s0", "valley-lr0.25x-s1", "rising-lr2x-s2",
                             "rising-lr2x-s3", "unstable-lr0.25x-s0", "unstable-lr0.25x-s1"));
  EXPECT_THAT(stages[1], ::testing::UnorderedElementsAre("valley-lr0.125x-s0", "valley-lr0.125x-s1",
                                                         "unstable-lr0.5x-s2", "unstable-lr0.5x-s3"));
  EXPECT_THAT(stages[2], ::testing::UnorderedElementsAre("valley-lr0.25x-s2", "valley-lr0.25x-s3"));
  for (const auto& run : plan.runs) {
    if (run.id == "valley-lr0.25x-s2") {
      EXPECT_EQ(run.stage, "final");
      EXPECT_DOUBLE_EQ(run.config["optimizer"]["lr"].as<double>(), 0.0025);
      EXPECT_EQ(run.config["seed"].as<uint64_t>(), 2u);
    }
  }
}

// The whole loop through processes: every optimizer ends with its final seeds at the best lr
// of its tuning runs, and that lr is interior or on the bound, which the comparison flags.
TEST(SweepTuneTest, RunsEveryStageAndComparesTheFinalSeeds) {
  const auto plan = ex::plan_sweep(YAML::Load(R"(name: tuned
data: {type: gaussian, samples: 64, dim: 4, classes: 3}
model: {type: linear}
train: {steps: 20, eval_every: 20}
sweep:
  optimizers: [{name: adam, lr: 0.1}, {name: adamw, lr: 0.1}]
  seeds: [0]
  parallel: 2
  tune: {lr_log2: [-1, 1], extend_to: [-2, 2], final_seeds: 2}
)"), "tuned.yaml");
  const auto dir = fresh_dir("sweep_tuned");
  const auto outcome = ex::run_sweep(plan, dir, BLOCKOPT_CLI_PATH);
  EXPECT_EQ(outcome.failed, 0);
  const auto c = nlohmann::json::parse(ex::read_file(dir / "comparison.json"));
  const auto index = nlohmann::json::parse(ex::read_file(dir / "sweep.json"));
  for (const auto& label : {"adam", "adamw"}) {
    const auto& info = c["optimizers"][label];
    ASSERT_TRUE(info["best"].is_object()) << info.dump();
    const double best = info["best"]["lr_multiplier"];
    const int best_k = static_cast<int>(std::lround(std::log2(best)));
    const auto& grid = info["grid"];
    const int low = static_cast<int>(std::lround(std::log2(grid.front()["lr_multiplier"].get<double>())));
    const int high = static_cast<int>(std::lround(std::log2(grid.back()["lr_multiplier"].get<double>())));
    EXPECT_GE(low, -2);
    EXPECT_LE(high, 2);
    const bool on_edge = best_k == low || best_k == high;
    EXPECT_EQ(info["best_on_edge"].get<bool>(), on_edge);
    if (on_edge) {
      EXPECT_TRUE(best_k == -2 || best_k == 2) << label << " stopped on an edge inside the bound";
    }
    ASSERT_TRUE(info["final"].is_object());
    EXPECT_EQ(info["final"]["source"], "final seeds at the best lr");
    EXPECT_EQ(info["final"]["completed"], 2);
    EXPECT_DOUBLE_EQ(info["final"]["lr_multiplier"].get<double>(), best);
    int finals = 0;
    for (const auto& run : index["runs"]) {
      if (run["optimizer"] == label && run["stage"] == "final") {
        ++finals;
        EXPECT_DOUBLE_EQ(run["lr_multiplier"].get<double>(), best);
      }
    }
    EXPECT_EQ(finals, 2);
  }
  // A second call finds everything done: no run starts again.
  const auto again = ex::run_sweep(plan, dir, "/nonexistent/blockopt");
  EXPECT_EQ(again.failed, 0);
  EXPECT_EQ(again.completed, outcome.completed);
}

TEST(SweepTest, RunsEachRunAsAProcessLoggingToItsDirectory) {
  const auto plan = ex::plan_sweep(YAML::Load(R"(name: p
data: {type: gaussian, samples: 32, dim: 4, classes: 3}
model: {type: linear}
optimizer: {name: adam, lr: 0.01}
train: {steps: 2}
sweep: {seeds: [0, 1], parallel: 2}
)"), "p.yaml");
  const auto dir = fresh_dir("sweep_processes");
  EXPECT_EQ(ex::run_sweep(plan, dir, BLOCKOPT_CLI_PATH).completed, 2);
  for (const auto& run : plan.runs) {
    EXPECT_THAT(ex::read_file(dir / "runs" / run.id / "run.log"), HasSubstr("run directory"));
  }
  // A command that cannot start: every run is recorded as failed, with the shell's code 127.
  const auto missing = ex::run_sweep(plan, fresh_dir("sweep_no_command"), "/nonexistent/blockopt");
  EXPECT_EQ(missing.failed, 2);
  EXPECT_THAT(ex::read_file(missing.dir / "runs" / plan.runs[0].id / "summary.json"),
              HasSubstr("code 127"));
}

// Every shipped config is valid: its keys, types and ranges pass (sweeps: every run).
TEST(SweepTest, ShippedConfigsAreValid) {
  int checked = 0;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(BLOCKOPT_SOURCE_DIR) / "experiments" / "configs")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    const auto config = ex::load_yaml_file(entry.path().string());
    // SentencePiece token files come from a separate blockopt-tokenize step (a Long test).
    const auto needs_token_files = [](const YAML::Node& c) {
      const auto tokenizer = c["data"]["tokenizer"];
      return tokenizer && tokenizer["type"] && tokenizer["type"].as<std::string>() == "sentencepiece";
    };
    if (needs_token_files(config)) continue;
    if (ex::is_sweep(config)) {
      // Runs that differ only in seed or lr multiplier (> 0, checked by plan_sweep) share
      // their keys: one build per optimizer entry and grid setting.
      std::set<std::string> built;
      for (const auto& run : ex::plan_sweep(config, entry.path().string()).runs) {
        if (needs_token_files(run.config) || !built.insert(run.optimizer_label).second) continue;
        EXPECT_NO_THROW(ex::build_experiment(run.config, run.id));
      }
    } else {
      EXPECT_NO_THROW(ex::build_experiment(config, entry.path().string()));
    }
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

// Three workers on one sweep, one killed (SIGKILL) while its run is under way: its run (killed
// with it) is taken over once the lease has run out and resumed from its checkpoint, no run is
// started after it ended, every step is logged once, and the comparison is written once. The
// 4 s lease is renewed every 1.3 s: a live worker would have to stall for 2.7 s to lose it.
TEST(SweepWorkerTest, ThreeWorkersOneKilledDoEveryRunOnce) {
  const auto dir = fresh_dir("sweep_workers");
  std::ofstream(dir / "sweep.yaml") << R"(name: w
data: {type: gaussian, samples: 256, dim: 32, classes: 10, batch: 32}
model: {type: mlp, hidden: [64, 64]}
optimizer: {name: adamw, lr: 0.003}
train: {steps: 400, checkpoint_every: 10, log_every: 100}
sweep: {seeds: [0, 1, 2, 3, 4]}
)";
  const auto plan = ex::plan_sweep(YAML::LoadFile((dir / "sweep.yaml").string()), "sweep.yaml");
  ASSERT_EQ(plan.runs.size(), 5u);
  const auto out = dir / "out";
  std::vector<pid_t> workers;
  for (int w = 0; w < 3; ++w) {
    workers.push_back(ex::spawn_logged({BLOCKOPT_CLI_PATH, "run", (dir / "sweep.yaml").string(),
                                        "--out", out.string(), "--worker", "--lease", "4",
                                        "--no-progress"},
                                       dir / ("worker" + std::to_string(w) + ".log"), false));
  }
  // The first run seen under way (claimed, checkpointed, not ended): kill its worker.
  std::string victim_run;
  pid_t victim = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (victim == 0 && std::chrono::steady_clock::now() < deadline) {
    for (size_t r = 0; r < plan.runs.size() && victim == 0; ++r) {
      const auto run = out / "runs" / plan.runs[r].id;
      if (!fs::exists(run / "checkpoint.pt") || fs::exists(run / "summary.json")) continue;
      std::string claim;
      try {
        claim = ex::read_file(run / "claim");
      } catch (const std::exception&) {
        continue;
      }
      const pid_t holder = std::stoi(claim.substr(claim.rfind(':') + 1));
      if (std::find(workers.begin(), workers.end(), holder) == workers.end()) continue;
      kill(holder, SIGKILL);
      victim = holder;
      victim_run = run.filename().string();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_NE(victim, 0) << "no run was seen under way";
  int reports = 0;
  for (size_t w = 0; w < workers.size(); ++w) {
    int status = 0;
    waitpid(workers[w], &status, 0);
    const auto log = ex::read_file(dir / ("worker" + std::to_string(w) + ".log"));
    if (workers[w] == victim) {
      EXPECT_TRUE(WIFSIGNALED(status)) << log;
      continue;
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;
    if (log.find("report: ") != std::string::npos) ++reports;
  }
  EXPECT_EQ(reports, 1);  // one worker wrote the comparison and the report
  EXPECT_TRUE(fs::exists(out / "comparison.json"));
  for (const auto& planned : plan.runs) {
    const auto run = out / "runs" / planned.id;
    EXPECT_THAT(ex::read_file(run / "summary.json"), HasSubstr("\"completed\"")) << run;
    EXPECT_FALSE(fs::exists(run / "claim")) << run;
    const auto log = ex::read_file(run / "run.log");
    size_t starts = 0;
    for (size_t at = log.find("steps, run directory"); at != std::string::npos;
         at = log.find("steps, run directory", at + 1)) {
      ++starts;
    }
    // Started once; the taken-over run twice, the second time resuming its checkpoint.
    const bool taken_over = run.filename() == victim_run;
    EXPECT_EQ(starts, taken_over ? 2u : 1u) << log;
    if (taken_over) {
      EXPECT_THAT(log, HasSubstr("resuming"));
    }
    std::ifstream metrics(run / "metrics.jsonl");
    int64_t last_step = 0;
    for (std::string line; std::getline(metrics, line);) {
      auto record = nlohmann::json::parse(line);
      if (!record.contains("loss") || record.contains("accuracy")) continue;
      EXPECT_EQ(record["step"].get<int64_t>(), last_step + 100) << run;
      last_step = record["step"];
    }
    EXPECT_EQ(last_step, 400) << run;
  }
}

// Two workers share a tuned sweep: both derive the same later stages from the finished runs,
// every run (tuning, extensions, final seeds) runs exactly once, and one writes the comparison.
TEST(SweepWorkerTest, TwoWorkersShareATunedSweepRunningEveryStageOnce) {
  const auto dir = fresh_dir("sweep_tuned_workers");
  std::ofstream(dir / "sweep.yaml") << R"(name: tw
data: {type: gaussian, samples: 64, dim: 4, classes: 3}
model: {type: linear}
train: {steps: 10, eval_every: 10}
sweep:
  optimizers: [{name: adam, lr: 0.1}, {name: adamw, lr: 0.001}]
  seeds: [0]
  tune: {lr_log2: [0, 1], extend_to: [-2, 3], final_seeds: 2}
)";
  const auto out = dir / "out";
  std::vector<pid_t> workers;
  for (int w = 0; w < 2; ++w) {
    workers.push_back(ex::spawn_logged({BLOCKOPT_CLI_PATH, "run", (dir / "sweep.yaml").string(),
                                        "--out", out.string(), "--worker", "--no-progress"},
                                       dir / ("worker" + std::to_string(w) + ".log"), false));
  }
  int reports = 0;
  for (size_t w = 0; w < workers.size(); ++w) {
    int status = 0;
    waitpid(workers[w], &status, 0);
    const auto log = ex::read_file(dir / ("worker" + std::to_string(w) + ".log"));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;
    if (log.find("report: ") != std::string::npos) ++reports;
  }
  EXPECT_EQ(reports, 1);
  const auto index = nlohmann::json::parse(ex::read_file(out / "sweep.json"));
  std::map<std::string, int> finals;
  for (const auto& run : index["runs"]) {
    const auto run_dir = out / "runs" / run["id"].get<std::string>();
    EXPECT_THAT(ex::read_file(run_dir / "summary.json"), HasSubstr("\"completed\"")) << run_dir;
    const auto log = ex::read_file(run_dir / "run.log");
    EXPECT_EQ(log.find("steps, run directory"), log.rfind("steps, run directory")) << log;
    if (run["stage"] == "final") ++finals[run["optimizer"]];
  }
  EXPECT_EQ(finals, (std::map<std::string, int>{{"adam", 2}, {"adamw", 2}}));
  // adamw at 2^0..2^1 x 0.001 is too small an lr for 10 steps: its best is the upper edge, so
  // the grid grew upward.
  EXPECT_GT(index["runs"].size(), 2u * 2u + 4u);
}
