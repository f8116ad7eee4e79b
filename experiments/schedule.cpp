#include <blockopt/experiments/schedule.h>

#include <cmath>

namespace blockopt::experiments {

double LrSchedule::factor(int64_t step) const {
  if (warmup > 0 && step <= warmup) return static_cast<double>(step) / warmup;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup);
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(decay_steps));
  switch (type) {
    case Type::Constant: return 1.0;
    case Type::Cosine:  // min + (1-min) (1 + cos(pi p)) / 2
      return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + std::cos(M_PI * progress));
    case Type::Linear: return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress);
    case Type::Step:  // torch StepLR: gamma^floor((t-1) / step_size) after warm-up
      return std::pow(gamma, static_cast<double>((step - warmup - 1) / step_size));
  }
  return 1.0;
}

LrSchedule read_schedule(ConfigNode node, int64_t total_steps) {
  LrSchedule s;
  s.total_steps = total_steps;
  const auto type = node.get<std::string>("type", "constant");
  if (type == "constant") s.type = LrSchedule::Type::Constant;
  else if (type == "cosine") s.type = LrSchedule::Type::Cosine;
  else if (type == "linear") s.type = LrSchedule::Type::Linear;
  else if (type == "step") s.type = LrSchedule::Type::Step;
  else node.fail("type", "unknown schedule '" + type + "' (constant, cosine, linear, step)");
  s.warmup = node.get<int64_t>("warmup", 0);
  node.check(s.warmup >= 0 && s.warmup < std::max<int64_t>(total_steps, 1), "warmup",
             "must be in [0, train.steps)");
  if (s.type == LrSchedule::Type::Cosine || s.type == LrSchedule::Type::Linear) {
    s.min_lr_ratio = node.get<double>("min_lr_ratio", 0.0);
    node.check(s.min_lr_ratio >= 0.0 && s.min_lr_ratio <= 1.0, "min_lr_ratio",
               "must be in [0, 1]");
  }
  if (s.type == LrSchedule::Type::Step) {
    s.step_size = node.get<int64_t>("step_size", 100);
    node.check(s.step_size > 0, "step_size", "must be > 0");
    s.gamma = node.get<double>("gamma", 0.1);
    node.check(s.gamma > 0.0 && s.gamma <= 1.0, "gamma", "must be in (0, 1]");
  }
  return s;
}

}  // namespace blockopt::experiments
