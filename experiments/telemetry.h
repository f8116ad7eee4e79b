#pragma once
// Per-layer telemetry (`telemetry: {every: 10}`): what each optimizer step did to each
// parameter tensor, in telemetry.jsonl beside metrics.jsonl. The quantities explain optimizer
// differences: how far a step moves a tensor, how spiky the update is, and how unevenly it is
// spread over the tensor's rows (output neurons), which NorMuon and Aurora equalise.
#include <blockopt/experiments/config.h>
#include <blockopt/experiments/run_dir.h>
#include <blockopt/experiments/trainer.h>

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

namespace blockopt::experiments {

struct TelemetryOptions {
  int64_t every = 0;         // 0 = off
  int power_iterations = 5;  // for the update's spectral norm
};
TelemetryOptions read_telemetry_options(ConfigNode node);

// One tensor, one step; dW = W_after - W_before, rows are dim 0 (a > 2-D tensor is viewed
// as (rows, the rest), as the matrix optimizers see it).
struct UpdateStatistics {
  double update_ratio = 0.0;  // ||dW||_F / ||W_before||_F
  double update_rms = 0.0;    // ||dW||_F / sqrt(numel)
  double grad_norm = 0.0;     // ||G||_F of the gradient the optimizer stepped on
  // >= 2-D only (nothing for vectors):
  std::optional<double> update_spectral;  // ||dW||_2 by power iteration: a lower bound that
                                          // tightens with the iterations
  std::optional<double> row_max_over_min;  // max_i ||dW_i|| / min_i ||dW_i|| (inf if a row is 0)
  std::optional<double> row_cv;            // std_i ||dW_i|| / mean_i ||dW_i||
  std::optional<double> dead_rows;  // fraction of rows with ||dW_i|| < 1e-3 median_i ||dW_i||
};

// `generator` draws the power iteration's start vector (never the global one: telemetry must
// leave training bit-identical; it is seeded per step, so a resumed run logs the same values).
UpdateStatistics update_statistics(const torch::Tensor& before, const torch::Tensor& after,
                                   const torch::Tensor& grad, int power_iterations,
                                   at::Generator& generator);

// Writes {"step": s, "tensors": {name: statistics}} to telemetry.jsonl at every `every`-th
// step (rank 0 of a data-parallel job writes; every rank's parameters are the same).
class UpdateTelemetry : public Callback {
 public:
  UpdateTelemetry(fs::path path, TelemetryOptions options, uint64_t seed);
  void on_train_begin(Trainer& trainer) override;
  void on_before_step(Trainer& trainer, int64_t step) override;
  void on_step_end(Trainer& trainer, const StepMetrics& m) override;

 private:
  JsonlWriter writer_;
  TelemetryOptions options_;
  uint64_t seed_;
  at::Generator generator_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> before_, grads_;  // this step's, while it is a telemetry step
};

}  // namespace blockopt::experiments
