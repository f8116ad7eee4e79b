#include <blockopt/experiments/config.h>
#include <blockopt/experiments/process.h>
#include <blockopt/experiments/report.h>
#include <blockopt/experiments/run.h>
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
    const auto run_dir = dir / "runs" / r.id;
    fs::create_directories(run_dir);
    nlohmann::json summary = {{"status", r.status}, {"message", r.status == "diverged" ? "loss is NaN" : ""},
                              {"optimizer_state_bytes", 100}, {"peak_rss_bytes", 1 << 20}};
    if (r.status == "completed") summary["final_eval"] = {{"loss", r.final_loss}, {"step", 30}};
    ex::write_file_atomic(run_dir / "summary.json", summary.dump());
    std::string metrics = R"({"step":10,"eval_loss":1.5,"wall_time":1.0})" "\n";
    if (r.hit_step > 0) {
      metrics += nlohmann::json{{"step", r.hit_step}, {"eval_loss", 0.9}, {"wall_time", r.hit_step / 10}}.dump() + "\n";
    }
    ex::write_file_atomic(run_dir / "metrics.jsonl", metrics);
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
  EXPECT_THAT(html, HasSubstr("<svg"));
  EXPECT_THAT(html, HasSubstr("a-2-s1"));
  EXPECT_THAT(html, HasSubstr("loss is NaN"));
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // no network links
  EXPECT_TRUE(fs::exists(dir / "comparison.json"));
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

// Renders a report in headless Chromium and checks the DOM.
TEST(ReportTest, RendersInHeadlessChromium) {
  BLOCKOPT_REQUIRE_INSTALLED("/usr/bin/chromium", "chromium");
  const auto dir = fresh_dir("render");
  ex::write_file_atomic(dir / "summary.json", R"({"status":"completed","steps":2})");
  ex::write_file_atomic(dir / "metrics.jsonl",
                        "{\"step\":1,\"loss\":2.0}\n{\"step\":2,\"loss\":1.5}\n{\"step\":2,\"eval_loss\":1.6}\n");
  const auto report = ex::write_report(dir);
  const auto dom = dir / "dom.html";
  const std::string command =
      "/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      "--disable-background-networking --disable-component-update --disable-sync --user-data-dir=" +
      (dir / "profile").string() + " --dump-dom file://" + report.string() + " > " + dom.string() +
      " 2>/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0);
  const auto html = ex::read_file(dom);
  EXPECT_THAT(html, HasSubstr("<polyline"));
  EXPECT_THAT(html, HasSubstr("completed"));
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
