#include <blockopt/experiments/callbacks.h>
#include <blockopt/experiments/process.h>
#include <blockopt/experiments/run.h>

#include <gmock/gmock.h>
#include "common.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
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
  torch::serialize::InputArchive model_archive;
  ex::read_checkpoint(checkpoint).read("model", model_archive);
  e.model->load(model_archive);
  return e.model;
}

// Damages a checkpoint file the ways a crash or a bad disk does.
void truncate_to_half(const fs::path& file) { fs::resize_file(file, fs::file_size(file) / 2); }

void overwrite_with_garbage_at(const fs::path& file, std::streamoff offset) {
  std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
  out.seekp(offset);
  out << std::string(256, '\xA5');
}

void overwrite_start_with_garbage(const fs::path& file) { overwrite_with_garbage_at(file, 0); }

// Inside the data of a tensor, which libtorch alone would load without noticing.
void overwrite_middle_with_garbage(const fs::path& file) {
  overwrite_with_garbage_at(file, static_cast<std::streamoff>(fs::file_size(file) / 2));
}

// Checkpoints at steps 5 and 10 (checkpoint.prev.pt, checkpoint.pt) of a run that crashed at
// step 12.
void crash_after_two_checkpoints(const fs::path& checkpoint) {
  auto crashed = ex::build_experiment(YAML::Load(kConfig), "test");
  auto trainer = make_trainer(crashed);
  trainer.add_callback(std::make_shared<ex::Checkpointer>(checkpoint, 5));
  trainer.add_callback(std::make_shared<CrashAt>(12));
  EXPECT_THROW(trainer.run(), std::runtime_error);
}

// Parameters of kConfig trained for all its steps without interruption.
std::shared_ptr<blockopt::models::Model> uninterrupted_model() {
  auto e = ex::build_experiment(YAML::Load(kConfig), "test");
  EXPECT_EQ(make_trainer(e).run().status, ex::TrainResult::Status::Completed);
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

TEST(TrainerTest, DamagedCheckpointFallsBackToThePreviousOne) {
  const auto reference = uninterrupted_model();
  for (const auto& damage :
       {truncate_to_half, overwrite_start_with_garbage, overwrite_middle_with_garbage}) {
    const auto checkpoint = fresh_dir("fallback") / "checkpoint.pt";
    crash_after_two_checkpoints(checkpoint);
    ASSERT_TRUE(fs::exists(ex::previous_checkpoint(checkpoint)));
    damage(checkpoint);

    auto resumed = ex::build_experiment(YAML::Load(kConfig), "test");
    auto trainer = make_trainer(resumed);
    trainer.load_checkpoint(checkpoint);
    EXPECT_EQ(trainer.step(), 5);
    EXPECT_EQ(trainer.run().steps_done, 14);
    expect_same_parameters(*reference, *resumed.model);
  }
}

TEST(TrainerTest, BothCheckpointsDamagedIsAnErrorNamingBoth) {
  const auto checkpoint = fresh_dir("both_damaged") / "checkpoint.pt";
  crash_after_two_checkpoints(checkpoint);
  truncate_to_half(checkpoint);
  overwrite_start_with_garbage(ex::previous_checkpoint(checkpoint));
  auto e = ex::build_experiment(YAML::Load(kConfig), "test");
  auto trainer = make_trainer(e);
  const auto error = blockopt::test::error_of([&] { trainer.load_checkpoint(checkpoint); });
  EXPECT_THAT(error, ::testing::HasSubstr(checkpoint.string() + " cannot be loaded"));
  EXPECT_THAT(error, ::testing::HasSubstr(ex::previous_checkpoint(checkpoint).string()));
  EXPECT_EQ(trainer.step(), 0);
}

TEST(TrainerTest, FailedLoadLeavesTheTrainerAsItWas) {
  // A checkpoint without a data part: loading it fails after the model and optimizer are set.
  struct DataWithoutCheckpoint : blockopt::data::DataSource {
    explicit DataWithoutCheckpoint(std::shared_ptr<DataSource> data) : data(std::move(data)) {}
    blockopt::data::Batch next_batch() override { return data->next_batch(); }
    std::vector<blockopt::data::Batch> eval_batches() const override {
      return data->eval_batches();
    }
    int64_t items_per_batch() const override { return data->items_per_batch(); }
    std::string item_name() const override { return data->item_name(); }
    int64_t input_dim() const override { return data->input_dim(); }
    int64_t num_classes() const override { return data->num_classes(); }
    void save(torch::serialize::OutputArchive&) const override {}
    void load(torch::serialize::InputArchive&) override {}
    std::shared_ptr<DataSource> data;
  };
  const auto checkpoint = fresh_dir("rollback") / "checkpoint.pt";
  auto other = ex::build_experiment(YAML::Load(kConfig), "test");
  ex::Trainer source(other.model, std::make_shared<DataWithoutCheckpoint>(other.data),
                     other.optimizer, other.schedule, other.trainer);
  source.run();
  source.save_checkpoint(checkpoint);

  const auto reference = uninterrupted_model();
  auto e = ex::build_experiment(YAML::Load(kConfig), "test");
  auto trainer = make_trainer(e);
  EXPECT_THAT(blockopt::test::error_of([&] { trainer.load_checkpoint(checkpoint); }),
              ::testing::HasSubstr("sampler"));
  EXPECT_EQ(trainer.step(), 0);
  // Model, optimizer, data position and RNG as built: the run equals an uninterrupted one.
  EXPECT_EQ(trainer.run().steps_done, 14);
  expect_same_parameters(*reference, *e.model);
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

// Two processes never run in one directory: a second claim waits until the first holder is
// gone (here both in one process: flock locks belong to each open of the lock file).
TEST(RunDirectoryTest, ASecondClaimWaitsForTheFirstHolder) {
  const auto dir = fresh_dir("run_lock");
  auto first = std::make_unique<ex::RunDirectory>(dir / "out");
  EXPECT_EQ(first->claim("name: x\n"), ex::RunDirectory::State::Fresh);
  std::atomic<bool> second_claimed{false};
  std::thread second([&] {
    ex::RunDirectory again(dir / "out");
    again.claim("name: x\n");
    second_claimed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(second_claimed);
  first.reset();  // the first holder ends
  second.join();
  EXPECT_TRUE(second_claimed);
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

namespace {

// A run directory holding a whole run's metrics.jsonl, its checkpoints of steps 10 and 14,
// and the summary a sweep records for a crashed run, so that starting it again resumes.
ex::RunRequest interrupted_run(const fs::path& dir) {
  std::ofstream(dir / "run.yaml") << kConfig;
  ex::RunRequest request;
  request.config_path = (dir / "run.yaml").string();
  request.out_dir = (dir / "out").string();
  EXPECT_EQ(ex::run_experiment(request).result.status, ex::TrainResult::Status::Completed);
  ex::write_file_atomic(dir / "out" / "summary.json",
                        R"({"status": "failed", "message": "process exited with code 137"})");
  return request;
}

}  // namespace

TEST(RunDirectoryTest, FailedResumeKeepsMetricsAndSummary) {
  const auto dir = fresh_dir("failed_resume");
  const auto request = interrupted_run(dir);
  const ex::RunDirectory run(dir / "out");
  const auto metrics = ex::read_file(run.metrics_path());
  const auto summary = ex::read_file(run.summary_path());
  overwrite_start_with_garbage(run.checkpoint_path());
  truncate_to_half(run.previous_checkpoint_path());

  const auto error = blockopt::test::error_of([&] { ex::run_experiment(request); });
  EXPECT_THAT(error, ::testing::HasSubstr(run.checkpoint_path().string()));
  EXPECT_THAT(error, ::testing::HasSubstr(run.previous_checkpoint_path().string()));
  EXPECT_EQ(ex::read_file(run.metrics_path()), metrics);
  EXPECT_EQ(ex::read_file(run.summary_path()), summary);
}

TEST(RunDirectoryTest, ResumesFromThePreviousCheckpointAlone) {
  // A crash between the two renames of save_checkpoint leaves only checkpoint.prev.pt.
  const auto dir = fresh_dir("prev_alone");
  const auto request = interrupted_run(dir);
  const ex::RunDirectory run(dir / "out");
  fs::remove(run.checkpoint_path());
  const auto outcome = ex::run_experiment(request);
  EXPECT_TRUE(outcome.resumed);
  EXPECT_EQ(outcome.result.steps_done, 14);
  int64_t last_step = 0;
  for (const auto& record : ex::read_jsonl(run.metrics_path())) {
    if (!record.contains("loss")) continue;
    EXPECT_EQ(record["step"].get<int64_t>(), last_step + 1);  // each step once, none lost
    last_step = record["step"];
  }
  EXPECT_EQ(last_step, 14);
}

TEST(RunDirectoryTest, StartFailingBeforeItsFirstRecordKeepsMetrics) {
  struct FailAtBegin : ex::Callback {
    void on_train_begin(ex::Trainer&) override { throw std::runtime_error("probe failed"); }
  };
  const auto dir = fresh_dir("failed_start");
  interrupted_run(dir);
  const ex::RunDirectory run(dir / "out");
  const auto metrics = ex::read_file(run.metrics_path());
  auto e = ex::build_experiment(YAML::Load(kConfig), "test");
  auto trainer = make_trainer(e);
  trainer.load_checkpoint(run.previous_checkpoint_path());
  trainer.add_callback(std::make_shared<ex::MetricsLogger>(run, e.data->item_name()));
  trainer.add_callback(std::make_shared<FailAtBegin>());
  EXPECT_THROW(trainer.run(), std::runtime_error);
  EXPECT_EQ(ex::read_file(run.metrics_path()), metrics);
}

namespace {

// Starts `blockopt run <config> --out <out>` with its stdout and stderr written to `log`.
pid_t start_cli(const fs::path& config, const fs::path& out, const fs::path& log) {
  return ex::spawn_logged({BLOCKOPT_CLI_PATH, "run", config.string(), "--out", out.string(),
                           "--no-progress"},
                          log, /*append=*/false);
}

int wait_status(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

bool exited_ok(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

}  // namespace

// A real kill (SIGKILL) of the CLI mid-run, then the same command again, must resume and end
// with the same parameters as an uninterrupted run.
TEST(CliTest, ResumeAfterKillMatchesUninterruptedRun) {
  const int64_t steps = 300;
  const std::string config = R"(name: kill-test
seed: 2
data: {type: gaussian, samples: 256, dim: 32, classes: 10, batch: 32}
model: {type: mlp, hidden: [64, 64]}
optimizer: {name: adamw, lr: 0.003}
schedule: {type: cosine, warmup: 10}
train: {steps: 300, checkpoint_every: 10, log_every: 50}
)";
  const auto dir = fresh_dir("kill");
  const auto config_path = dir / "run.yaml";
  std::ofstream(config_path) << config;
  ASSERT_TRUE(exited_ok(wait_status(start_cli(config_path, dir / "whole", dir / "whole.log"))));

  // Killed as soon as its first checkpoint exists: a few steps into the run.
  const auto killed = dir / "killed";
  const pid_t pid = start_cli(config_path, killed, dir / "killed.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(killed / "checkpoint.pt") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  kill(pid, SIGKILL);
  const int status = wait_status(pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the run was not killed mid-run; its log:\n" << ex::read_file(dir / "killed.log");
  ASSERT_FALSE(fs::exists(killed / "summary.json"));

  ASSERT_TRUE(exited_ok(wait_status(start_cli(config_path, killed, dir / "resumed.log"))));
  const auto log = ex::read_file(dir / "resumed.log");
  std::smatch resumed;
  ASSERT_TRUE(std::regex_search(log, resumed, std::regex("resuming .* from step (\\d+)"))) << log;
  const int64_t resumed_step = std::stoll(resumed[1]);
  EXPECT_GT(resumed_step, 0);
  EXPECT_LT(resumed_step, steps);
  EXPECT_FALSE(fs::exists(killed / "checkpoint.pt.tmp"));
  auto whole = model_from_checkpoint(config, dir / "whole" / "checkpoint.pt");
  auto resumed_model = model_from_checkpoint(config, killed / "checkpoint.pt");
  expect_same_parameters(*whole, *resumed_model);
  // metrics.jsonl holds each step once, in order, after the resume (and no broken line).
  std::ifstream metrics(killed / "metrics.jsonl");
  std::string line;
  int64_t last_step = 0;
  while (std::getline(metrics, line)) {
    auto record = nlohmann::json::parse(line);
    if (!record.contains("loss")) continue;
    EXPECT_GT(record["step"].get<int64_t>(), last_step);
    last_step = record["step"];
  }
  EXPECT_EQ(last_step, steps);
}
