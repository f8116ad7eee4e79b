#pragma once
#include <blockopt/experiments/config.h>

#include <cstdint>

namespace blockopt::experiments {

// Learning-rate multiplier per step: linear warm-up, then constant, cosine or linear decay to
// min_lr_ratio, or StepLR (gamma every step_size steps).
struct LrSchedule {
  enum class Type { Constant, Cosine, Linear, Step };
  Type type = Type::Constant;
  int64_t warmup = 0;
  double min_lr_ratio = 0.0;
  int64_t step_size = 1;
  double gamma = 0.1;
  int64_t total_steps = 1;

  // Multiplier for update number `step` (1-based).
  double factor(int64_t step) const;
};

LrSchedule read_schedule(ConfigNode node, int64_t total_steps);

}  // namespace blockopt::experiments
