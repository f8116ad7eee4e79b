#pragma once
// Standard trainer callbacks: metrics.jsonl, periodic checkpoints, console log, progress bar.
#include <blockopt/experiments/run_dir.h>
#include <blockopt/experiments/trainer.h>

#include <chrono>
#include <cstdio>
#include <optional>

namespace blockopt::experiments {

// One JSON line per logged step (and per evaluation) in metrics.jsonl.
class MetricsLogger : public Callback {
 public:
  MetricsLogger(const RunDirectory& dir, std::string item_name);
  void on_train_begin(Trainer& trainer) override;
  void on_step_end(Trainer& trainer, const StepMetrics& m) override;
  void on_eval(Trainer& trainer, const EvalMetrics& m) override;

 private:
  JsonlWriter writer_;
  std::string item_name_;
};

// checkpoint.pt every `every` steps and at the end of a completed run.
class Checkpointer : public Callback {
 public:
  Checkpointer(std::filesystem::path path, int64_t every);
  void on_step_end(Trainer& trainer, const StepMetrics& m) override;
  void on_train_end(Trainer& trainer, const TrainResult& result) override;

 private:
  std::filesystem::path path_;
  int64_t every_;
};

// A log line every log_every steps (and per evaluation).
class ConsoleLogger : public Callback {
 public:
  void on_step_end(Trainer& trainer, const StepMetrics& m) override;
  void on_eval(Trainer& trainer, const EvalMetrics& m) override;
};

// One-line terminal progress bar with ETA and live loss, redrawn in place on stderr.
// NOTE: hand-written: no Debian package offers a C++ progress bar (indicators is not packaged).
class ProgressBar : public Callback {
 public:
  explicit ProgressBar(std::FILE* out = stderr);
  void on_train_begin(Trainer& trainer) override;
  void on_step_end(Trainer& trainer, const StepMetrics& m) override;
  void on_train_end(Trainer& trainer, const TrainResult& result) override;
  // The bar text for a given state (exposed for tests).
  static std::string render(int64_t step, int64_t total, double loss, double seconds_left,
                            double steps_per_second, int width = 30);

 private:
  std::FILE* out_;
  int64_t first_step_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace blockopt::experiments
