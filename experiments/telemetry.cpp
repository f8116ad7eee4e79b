#include <blockopt/experiments/telemetry.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>

namespace blockopt::experiments {

TelemetryOptions read_telemetry_options(ConfigNode node) {
  TelemetryOptions options;
  options.every = node.get<int64_t>("every", 0);
  node.check(options.every >= 0, "every", "must be >= 0 (0 = off)");
  options.power_iterations = node.get<int>("power_iterations", 5);
  node.check(options.power_iterations >= 1, "power_iterations", "must be >= 1");
  return options;
}

namespace {

// ||A||_2 >= ||A v|| for the unit v after `iterations` steps of v <- A^T A v / ||A^T A v||.
double power_iteration(const torch::Tensor& a, int iterations, at::Generator& generator) {
  auto v = torch::randn({a.size(1)}, generator, a.options());  // (cols)
  v = v / v.norm();
  double sigma = 0.0;
  for (int i = 0; i < iterations; ++i) {
    const auto av = torch::mv(a, v);  // (rows)
    sigma = av.norm().item<double>();
    if (sigma == 0.0) return 0.0;
    const auto atav = torch::mv(a.t(), av);  // (cols)
    v = atav / atav.norm();
  }
  return torch::mv(a, v).norm().item<double>();
}

}  // namespace

UpdateStatistics update_statistics(const torch::Tensor& before, const torch::Tensor& after,
                                   const torch::Tensor& grad, int power_iterations,
                                   at::Generator& generator) {
  const auto w = before.to(torch::kFloat64);
  const auto delta = after.to(torch::kFloat64) - w;
  UpdateStatistics out;
  const double delta_norm = delta.norm().item<double>();
  out.update_ratio = delta_norm / w.norm().item<double>();
  out.update_rms = delta_norm / std::sqrt(static_cast<double>(delta.numel()));
  out.grad_norm = grad.defined() ? grad.to(torch::kFloat64).norm().item<double>() : 0.0;
  if (delta.dim() < 2) return out;
  const auto matrix = delta.reshape({delta.size(0), -1});  // (rows, cols)
  out.update_spectral = power_iteration(matrix, power_iterations, generator);
  const auto rows = matrix.norm(2, {1});  // (rows)
  const double mean = rows.mean().item<double>();
  const double smallest = rows.min().item<double>();
  out.row_max_over_min = smallest > 0.0 ? rows.max().item<double>() / smallest
                                        : std::numeric_limits<double>::infinity();
  out.row_cv = mean > 0.0 && rows.numel() > 1 ? rows.std().item<double>() / mean : 0.0;
  // NOTE: torch's median of an even count is the lower middle value; a fraction of rows does
  // not need the midpoint.
  const double median = rows.median().item<double>();
  out.dead_rows = (rows < 1e-3 * median).to(torch::kFloat64).mean().item<double>();
  return out;
}

UpdateTelemetry::UpdateTelemetry(fs::path path, TelemetryOptions options, uint64_t seed)
    : writer_(std::move(path)),
      options_(options),
      seed_(seed),
      generator_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

void UpdateTelemetry::on_train_begin(Trainer& trainer) { writer_.resume_after(trainer.step()); }

void UpdateTelemetry::on_before_step(Trainer& trainer, int64_t step) {
  names_.clear();
  before_.clear();
  grads_.clear();
  if (options_.every == 0 || step % options_.every != 0) return;
  generator_.set_current_seed(seed_ ^ static_cast<uint64_t>(step));
  for (const auto& item : trainer.model().named_parameters()) {
    if (!item.value().requires_grad()) continue;
    names_.push_back(item.key());
    before_.push_back(item.value().detach().clone());
    grads_.push_back(item.value().grad().defined() ? item.value().grad().detach().clone()
                                                   : torch::Tensor());
  }
}

void UpdateTelemetry::on_step_end(Trainer& trainer, const StepMetrics& m) {
  if (before_.empty()) return;
  const auto optional = [](const std::optional<double>& value) {
    return value && std::isfinite(*value) ? nlohmann::json(*value) : nlohmann::json(nullptr);
  };
  nlohmann::json tensors = nlohmann::json::object();
  const auto params = trainer.model().named_parameters();
  for (size_t i = 0; i < names_.size(); ++i) {
    const auto s = update_statistics(before_[i], params[names_[i]].detach(), grads_[i],
                                     options_.power_iterations, generator_);
    tensors[names_[i]] = {{"update_ratio", s.update_ratio},   {"update_rms", s.update_rms},
                          {"grad_norm", s.grad_norm},         {"update_spectral", optional(s.update_spectral)},
                          {"row_max_over_min", optional(s.row_max_over_min)},
                          {"row_cv", optional(s.row_cv)},     {"dead_rows", optional(s.dead_rows)}};
  }
  writer_.write({{"step", m.step}, {"tensors", tensors}});
  before_.clear();
  grads_.clear();
}

}  // namespace blockopt::experiments
