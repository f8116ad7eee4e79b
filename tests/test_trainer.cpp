#include <blockopt/experiments/callbacks.h>
#include <blockopt/experiments/run.h>

#include <gmock/gmock.h>
#include "common.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

namespace ex = blockopt::experiments;
namespace fs = std::filesystem;

namespace {

const char* kConfig = R"(name: resume-test
seed: 5
data: {type: gaussian, samples: 96, dim: 7, classes: 5, batch: 16}
model: {type: mlp, hidden: [9], activation: tanh}
optimizer: {name: adamw, lr: 0.02}
schedule: {type: cosine, warmup: 3, min_lr_ratio: 0.1}
train: {steps: 14, grad_accum: 2, grad_clip: 0.5, eval_every: 4, checkpoint_every: 5}
)";

using blockopt::test::fresh_dir;

struct CrashAt : ex::Callback {
  explicit CrashAt(int64_t step) : step(step) {}
  void on_step_end(ex::Trainer&, const ex::StepMetrics& m) override {
    if (m.step == step) throw std::runtime_error("simulated crash");
  }
  int64_t step;
};

ex::Trainer make_trainer(const ex::Experiment& e) {
  return ex::Trainer(e.model, e.data, e.optimizer, e.schedule, e.trainer);
}

void expect_same_parameters(blockopt::models::Model& a, blockopt::models::Model& b) {
  auto pa = a.named_parameters();
  auto pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i].value(), pb[i].value())) << "parameter " << pa[i].key();
  }
}

// Parameters stored in a run directory's checkpoint, loaded into a model built from `config`.
std::shared_ptr<blockopt::models::Model> model_from_checkpoint(const std::string& config,
                                                               const fs::path& checkpoint) {
  auto e = ex::build_experiment(YAML::Load(config), "test");
  torch::serialize::InputArchive archive, model_archive;
  archive.load_from(checkpoint.string());
  archive.read("model", model_archive);
  e.model->load(model_archive);
  return e.model;
}

}  // namespace

TEST(TrainerTest, ResumeAfterCrashIsBitIdentical) {
  auto uninterrupted = ex::build_experiment(YAML::Load(kConfig), "test");
  auto reference = make_trainer(uninterrupted);
  ASSERT_EQ(reference.run().status, ex::TrainResult::Status::Completed);

  const auto checkpoint = fresh_dir("resume") / "checkpoint.pt";
  auto crashed = ex::build_experiment(YAML::Load(kConfig), "test");
  auto first = make_trainer(crashed);
  first.add_callback(std::make_shared<ex::Checkpointer>(checkpoint, 5));
  first.add_callback(std::make_shared<CrashAt>(8));
  EXPECT_THROW(first.run(), std::runtime_error);

  auto resumed = ex::build_experiment(YAML::Load(kConfig), "test");
  auto second = make_trainer(resumed);
  second.load_checkpoint(checkpoint);
  EXPECT_EQ(second.step(), 5);
  // The loaded optimizer carries the checkpointed (scheduled) lr, not the constructed one.
  EXPECT_NE(resumed.optimizer->param_groups()[0].options().get_lr(), 0.02);
  const auto result = second.run();
  EXPECT_EQ(result.status, ex::TrainResult::Status::Completed);
  EXPECT_EQ(result.steps_done, 14);
  expect_same_parameters(*uninterrupted.model, *resumed.model);
}

TEST(TrainerTest, NonFiniteLossStopsAndKeepsLastGoodCheckpoint) {
  struct PoisonAt : ex::Callback {
    void on_step_end(ex::Trainer& t, const ex::StepMetrics& m) override {
      if (m.step != 3) return;
      torch::NoGradGuard no_grad;
      t.model().parameters()[0].fill_(std::numeric_limits<float>::quiet_NaN());
    }
  };
  const auto checkpoint = fresh_dir("nan") / "checkpoint.pt";
  auto e = ex::build_experiment(YAML::Load(kConfig), "test");
  auto trainer = make_trainer(e);
  trainer.add_callback(std::make_shared<ex::Checkpointer>(checkpoint, 2));
  trainer.add_callback(std::make_shared<PoisonAt>());
  const auto result = trainer.run();
  EXPECT_EQ(result.status, ex::TrainResult::Status::Diverged);
  EXPECT_EQ(result.steps_done, 3);
  EXPECT_THAT(result.message, ::testing::HasSubstr("loss is NaN at step 4"));
  auto restored = model_from_checkpoint(kConfig, checkpoint);
  for (const auto& p : restored->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
}

TEST(TrainerTest, ScheduleShapes) {
  ex::LrSchedule s;
  s.type = ex::LrSchedule::Type::Cosine;
  s.warmup = 4;
  s.min_lr_ratio = 0.1;
  s.total_steps = 14;
  EXPECT_DOUBLE_EQ(s.factor(1), 0.25);
  EXPECT_DOUBLE_EQ(s.factor(4), 1.0);
  EXPECT_NEAR(s.factor(9), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 0.5)), 1e-15);
  EXPECT_DOUBLE_EQ(s.factor(14), 0.1);
  s.type = ex::LrSchedule::Type::Linear;
  EXPECT_NEAR(s.factor(9), 0.1 + 0.9 * 0.5, 1e-15);
  s.type = ex::LrSchedule::Type::Step;  // torch StepLR after warm-up: gamma^floor((t-1)/size)
  s.step_size = 3;
  s.gamma = 0.5;
  EXPECT_DOUBLE_EQ(s.factor(5), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(7), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(8), 0.5);
  EXPECT_DOUBLE_EQ(s.factor(11), 0.25);
}

// Records each step's loss and every parameter's gradient (the trainer zeroes gradients only
// at the start of the next step).
struct GradientRecorder : ex::Callback {
  void on_step_end(ex::Trainer& trainer, const ex::StepMetrics& m) override {
    std::vector<torch::Tensor> step;
    for (const auto& p : trainer.model().parameters()) step.push_back(p.grad().clone());
    gradients.push_back(step);
    losses.push_back(m.loss);
  }
  std::vector<std::vector<torch::Tensor>> gradients;
  std::vector<double> losses;
};

TEST(TrainerTest, GradAccumulationEqualsLargerBatch) {
  // Full-batch data: 2 micro-batches of the same full batch average to the full-batch gradient.
  // NOTE: gradients are compared, not only parameters: Adam ignores the gradient's scale, so
  // summing the micro-batch gradients instead of averaging them would leave parameters equal.
  const char* one = R"(name: a
data: {type: gaussian, samples: 32, dim: 4, classes: 3}
model: {type: linear}
optimizer: {name: adam, lr: 0.01}
train: {steps: 3}
)";
  auto a = ex::build_experiment(YAML::Load(one), "a");
  auto yaml = YAML::Load(one);
  ex::apply_override(yaml, "train.grad_accum=2");
  auto b = ex::build_experiment(yaml, "b");
  auto recorded_a = std::make_shared<GradientRecorder>();
  auto recorded_b = std::make_shared<GradientRecorder>();
  auto trainer_a = make_trainer(a);
  auto trainer_b = make_trainer(b);
  trainer_a.add_callback(recorded_a);
  trainer_b.add_callback(recorded_b);
  trainer_a.run();
  trainer_b.run();

  // Independently: the first step's gradient is the full-batch gradient at initialisation.
  auto reference = ex::build_experiment(YAML::Load(one), "reference");
  auto batch = reference.data->next_batch();
  auto loss = blockopt::models::compute_loss(reference.model->forward(batch.inputs), batch.targets,
                                             reference.trainer.loss);
  loss.backward();
  auto initial = reference.model->parameters();
  ASSERT_EQ(recorded_a->gradients.size(), 3u);
  ASSERT_EQ(recorded_b->gradients.size(), 3u);
  for (size_t i = 0; i < initial.size(); ++i) {
    EXPECT_TRUE(torch::allclose(recorded_a->gradients[0][i], initial[i].grad(), 1e-6, 1e-7));
  }
  EXPECT_NEAR(recorded_a->losses[0], loss.item<double>(), 1e-6);
  for (size_t step = 0; step < 3; ++step) {
    EXPECT_NEAR(recorded_b->losses[step], recorded_a->losses[step], 1e-6) << "step " << step + 1;
    for (size_t i = 0; i < initial.size(); ++i) {
      EXPECT_TRUE(torch::allclose(recorded_b->gradients[step][i], recorded_a->gradients[step][i],
                                  1e-6, 1e-7))
          << "step " << step + 1 << " parameter " << i;
    }
  }
  auto pa = a.model->parameters()[0], pb = b.model->parameters()[0];
  EXPECT_TRUE(torch::allclose(pa, pb, 1e-6, 1e-7));
}

TEST(TrainerTest, ProgressBarRendersEtaAndLoss) {
  EXPECT_EQ(ex::ProgressBar::render(5, 10, 1.23456, 3725, 2.5, 10),
            "[#####.....] 5/10  50% loss 1.2346 2.5 it/s ETA 01:02:05");
}

TEST(RunDirectoryTest, RunWritesFilesAndRefusesADifferentRun) {
  const auto dir = fresh_dir("rundir");
  const auto config_path = dir / "run.yaml";
  std::ofstream(config_path) << kConfig;
  ex::RunRequest request;
  request.config_path = config_path.string();
  request.out_dir = (dir / "out").string();
  auto outcome = ex::run_experiment(request);
  EXPECT_EQ(outcome.result.status, ex::TrainResult::Status::Completed);
  for (auto name : {"config.resolved.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", "model.txt"}) {
    EXPECT_TRUE(fs::exists(dir / "out" / name)) << name;
  }
  auto summary = nlohmann::json::parse(ex::read_file(dir / "out" / "summary.json"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_GT(summary["flops_per_item"].get<int64_t>(), 0);
  EXPECT_NE(ex::read_file(dir / "out" / "model.txt").find("weight"), std::string::npos);
  EXPECT_EQ(summary["steps"], 14);
  EXPECT_GT(summary["optimizer_state_bytes"].get<int64_t>(), 0);
  EXPECT_TRUE(summary.contains("versions"));
  std::ifstream metrics(dir / "out" / "metrics.jsonl");
  std::string line;
  int steps = 0;
  while (std::getline(metrics, line)) {
    auto record = nlohmann::json::parse(line);
    if (record.contains("loss")) {
      ++steps;
      for (auto key : {"step", "lr", "grad_norm", "wall_time", "samples_per_s", "optimizer_state_bytes"}) {
        EXPECT_TRUE(record.contains(key)) << key;
      }
    }
  }
  EXPECT_EQ(steps, 14);
  // Same config again: already complete. A different config: refused, nothing overwritten.
  EXPECT_TRUE(ex::run_experiment(request).already_complete);
  request.overrides = {"optimizer.lr=0.5"};
  try {
    ex::run_experiment(request);
    ADD_FAILURE() << "different run accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("already holds a different run"));
  }
}

// A real kill (SIGKILL) of the CLI mid-run, then the same command again, must end with the
// same parameters as an uninterrupted run.
TEST(CliTest, ResumeAfterKillMatchesUninterruptedRun) {
  const std::string config = R"(name: kill-test
seed: 2
data: {type: gaussian, samples: 256, dim: 32, classes: 10, batch: 32}
model: {type: mlp, hidden: [64, 64]}
optimizer: {name: adamw, lr: 0.003}
schedule: {type: cosine, warmup: 10}
train: {steps: 300, checkpoint_every: 10, log_every: 50}
)";
  const auto dir = fresh_dir("kill");
  std::ofstream(dir / "run.yaml") << config;
  auto run_cli = [&](const fs::path& out) {
    pid_t pid = fork();
    if (pid == 0) {
      freopen("/dev/null", "w", stdout);
      freopen("/dev/null", "w", stderr);
      execl(BLOCKOPT_CLI_PATH, BLOCKOPT_CLI_PATH, "run", (dir / "run.yaml").c_str(), "--out",
            out.c_str(), "--no-progress", static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  };
  auto wait_ok = [](pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
  ASSERT_TRUE(wait_ok(run_cli(dir / "whole")));

  const auto killed = dir / "killed";
  pid_t pid = run_cli(killed);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(killed / "checkpoint.pt") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  const bool was_killed = WIFSIGNALED(status);
  ASSERT_TRUE(wait_ok(run_cli(killed)));
  if (!was_killed) GTEST_SKIP() << "the run finished before it could be killed";
  EXPECT_FALSE(fs::exists(killed / "checkpoint.pt.tmp"));
  auto whole = model_from_checkpoint(config, dir / "whole" / "checkpoint.pt");
  auto resumed = model_from_checkpoint(config, killed / "checkpoint.pt");
  expect_same_parameters(*whole, *resumed);
  // metrics.jsonl holds each step once, in order, after the resume.
  std::ifstream metrics(killed / "metrics.jsonl");
  std::string line;
  int64_t last_step = 0;
  while (std::getline(metrics, line)) {
    auto record = nlohmann::json::parse(line);
    if (!record.contains("loss")) continue;
    EXPECT_GT(record["step"].get<int64_t>(), last_step);
    last_step = record["step"];
  }
  EXPECT_EQ(last_step, 300);
}
