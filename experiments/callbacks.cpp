#include <blockopt/experiments/callbacks.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>

namespace blockopt::experiments {

MetricsLogger::MetricsLogger(const RunDirectory& dir, std::string item_name)
    : writer_(dir.metrics_path()), item_name_(std::move(item_name)) {}

void MetricsLogger::on_train_begin(Trainer& trainer) { writer_.resume_after(trainer.step()); }

void MetricsLogger::on_step_end(Trainer& trainer, const StepMetrics& m) {
  if (m.step % trainer.options().log_every != 0 && m.step != trainer.options().steps) return;
  writer_.write({{"step", m.step},
         {"loss", m.loss},
         {"lr", m.lr},
         {"grad_norm", m.grad_norm},
         {"wall_time", m.wall_time},
         {item_name_ + "_per_s", m.items_per_second},
         {"optimizer_state_bytes", m.state_bytes}});
}

void MetricsLogger::on_eval(Trainer&, const EvalMetrics& m) {
  writer_.write({{"step", m.step},
         {"eval_loss", m.loss},
         {"eval_accuracy", m.accuracy},
         {"wall_time", m.wall_time}});
}

Checkpointer::Checkpointer(std::filesystem::path path, int64_t every)
    : path_(std::move(path)), every_(every) {}

void Checkpointer::on_step_end(Trainer& trainer, const StepMetrics& m) {
  if (every_ > 0 && m.step % every_ == 0) trainer.save_checkpoint(path_);
}

void Checkpointer::on_train_end(Trainer& trainer, const TrainResult& result) {
  // A diverged run keeps its last good checkpoint untouched.
  if (result.status == TrainResult::Status::Completed) trainer.save_checkpoint(path_);
}

void ConsoleLogger::on_step_end(Trainer& trainer, const StepMetrics& m) {
  if (m.step % trainer.options().log_every != 0 && m.step != trainer.options().steps) return;
  spdlog::info("step {:>6}/{} loss {:.6f} lr {:.3e} grad_norm {:.4f}", m.step,
               trainer.options().steps, m.loss, m.lr, m.grad_norm);
}

void ConsoleLogger::on_eval(Trainer&, const EvalMetrics& m) {
  spdlog::info("eval at step {}: loss {:.6f} accuracy {:.4f}", m.step, m.loss, m.accuracy);
}

ProgressBar::ProgressBar(std::FILE* out) : out_(out) {}

std::string ProgressBar::render(int64_t step, int64_t total, double loss, double seconds_left,
                                double steps_per_second, int width) {
  const double fraction = total > 0 ? static_cast<double>(step) / total : 1.0;
  const int filled = static_cast<int>(std::lround(fraction * width));
  const auto eta = static_cast<int64_t>(std::max(0.0, seconds_left));
  return fmt::format("[{}{}] {}/{} {:3.0f}% loss {:.4f} {:.1f} it/s ETA {:02d}:{:02d}:{:02d}",
                     std::string(filled, '#'), std::string(width - filled, '.'), step, total,
                     100.0 * fraction, loss, steps_per_second, eta / 3600, (eta / 60) % 60,
                     eta % 60);
}

void ProgressBar::on_train_begin(Trainer& trainer) {
  first_step_ = trainer.step();
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void ProgressBar::on_step_end(Trainer& trainer, const StepMetrics& m) {
  const auto now = std::chrono::steady_clock::now();
  const bool last = m.step == trainer.options().steps;
  if (!last && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double rate = seconds > 0 ? (m.step - first_step_) / seconds : 0.0;
  const double left = rate > 0 ? (trainer.options().steps - m.step) / rate : 0.0;
  std::fprintf(out_, "\r%s\033[K", render(m.step, trainer.options().steps, m.loss, left, rate).c_str());
  std::fflush(out_);
}

void ProgressBar::on_train_end(Trainer&, const TrainResult&) {
  std::fprintf(out_, "\n");
  std::fflush(out_);
}

}  // namespace blockopt::experiments
