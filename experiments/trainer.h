#pragma once
// The step loop: gradient accumulation, clipping, lr schedule, evaluation, callbacks,
// checkpoint/resume that continues bit-identically, and a clean stop on NaN/Inf.
#include <blockopt/experiments/schedule.h>
#include <blockopt/data/data.h>
#include <blockopt/distributed/data_parallel.h>
#include <blockopt/distributed/optimizer_sharding.h>
#include <blockopt/models/loss.h>
#include <blockopt/models/model.h>

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace blockopt::experiments {

struct TrainerOptions {
  int64_t steps = 100;
  int64_t grad_accum = 1;
  double grad_clip = 0.0;  // max global grad norm; 0 = off
  int64_t eval_every = 0;  // 0 = only at the end
  int64_t log_every = 1;
  int64_t checkpoint_every = 0;  // 0 = no periodic checkpoints
  models::Loss loss = models::Loss::CrossEntropy;
};

TrainerOptions read_trainer_options(ConfigNode node);

struct StepMetrics {
  int64_t step = 0;
  double loss = 0.0;
  double lr = 0.0;  // first param group's lr for this step
  double grad_norm = 0.0;
  double wall_time = 0.0;      // seconds since the run started (resumes continue the clock)
  double items_per_second = 0.0;
  int64_t state_bytes = 0;
};

struct EvalMetrics {
  int64_t step = 0;
  double loss = 0.0;
  double accuracy = 0.0;
  double wall_time = 0.0;  // seconds since the run started
};

struct TrainResult {
  enum class Status { Completed, Diverged, Stopped };
  Status status = Status::Completed;
  int64_t steps_done = 0;
  double final_loss = 0.0;
  std::optional<EvalMetrics> final_eval;
  std::optional<EvalMetrics> best_eval;
  double wall_time = 0.0;
  std::string message;
};

const char* status_name(TrainResult::Status status);

class Trainer;

// The trainer state stored in a checkpoint file, its CRC-32 checked. Throws when the file is
// missing, truncated or corrupted.
torch::serialize::InputArchive read_checkpoint(const std::filesystem::path& path);

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Trainer&) {}
  // After the gradients of `step` are final (averaged over ranks, clipped), before the
  // optimizer steps.
  virtual void on_before_step(Trainer&, int64_t /*step*/) {}
  virtual void on_step_end(Trainer&, const StepMetrics&) {}
  virtual void on_eval(Trainer&, const EvalMetrics&) {}
  virtual void on_train_end(Trainer&, const TrainResult&) {}
};

class Trainer {
 public:
  Trainer(std::shared_ptr<models::Model> model, std::shared_ptr<data::DataSource> data,
          std::shared_ptr<torch::optim::Optimizer> optimizer, LrSchedule schedule,
          TrainerOptions options);

  void add_callback(std::shared_ptr<Callback> callback);
  // Data parallel training: each step this rank takes its rows of every global batch, and
  // the gradients and the logged loss are averaged over the ranks before the optimizer step;
  // evaluation batches are dealt round-robin to the ranks and their sums added up. Every
  // rank draws the same global batches, so the data position is the same on all ranks.
  void set_data_parallel(std::shared_ptr<distributed::DataParallel> parallel);
  // With data parallel: each rank steps only the parameters it owns and the owners broadcast
  // the new values; checkpoints gather the whole optimizer state on rank 0.
  void set_optimizer_sharding(std::shared_ptr<distributed::OptimizerSharding> sharding);
  // Trains from the current step to options.steps.
  TrainResult run();
  EvalMetrics evaluate();

  // Everything a bit-identical resume needs: step, model, optimizer state and options,
  // data position, RNG, clock. Written atomically and durably; the checkpoint it replaces
  // stays beside it as the fallback (previous_checkpoint in run_dir.h). In a data-parallel
  // job every rank calls it (a sharded optimizer's state is gathered) and rank 0 writes.
  void save_checkpoint(const std::filesystem::path& path) const;
  // Loads `path` or, when that is missing, truncated or corrupted, the previous checkpoint
  // (warning which file failed and why). Throws naming both files when neither loads. A
  // failed load leaves the trainer as it was.
  void load_checkpoint(const std::filesystem::path& path);

  int64_t step() const { return step_; }
  const TrainerOptions& options() const { return options_; }
  models::Model& model() { return *model_; }
  data::DataSource& data() { return *data_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  models::Loss loss_kind() const { return options_.loss; }
  distributed::DataParallel* data_parallel() const { return parallel_.get(); }  // null: one process

 private:
  void apply_schedule(int64_t step);
  double elapsed() const;  // wall time of this run, earlier sessions included
  double global_grad_norm() const;
  void write_state(torch::serialize::OutputArchive& archive) const;
  void read_state(torch::serialize::InputArchive& archive);
  // Loads one checkpoint file, all or nothing.
  void restore(const std::filesystem::path& path);

  std::shared_ptr<models::Model> model_;
  std::shared_ptr<data::DataSource> data_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  LrSchedule schedule_;
  TrainerOptions options_;
  std::vector<double> base_lrs_;  // per param group, as configured
  std::vector<std::shared_ptr<Callback>> callbacks_;
  std::shared_ptr<distributed::DataParallel> parallel_;  // null: one process
  std::shared_ptr<distributed::OptimizerSharding> sharding_;  // null: every rank steps all
  int64_t step_ = 0;
  double elapsed_before_ = 0.0;  // wall time accumulated by earlier sessions of this run
  std::chrono::steady_clock::time_point session_start_ = std::chrono::steady_clock::now();
  std::optional<EvalMetrics> best_eval_;
};

}  // namespace blockopt::experiments
