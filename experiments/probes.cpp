#include <blockopt/experiments/detail/probe.h>
#include <blockopt/experiments/probes.h>

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <stdexcept>

namespace blockopt::experiments {

namespace {

// Restores the global RNG and the model's train/eval mode on scope exit.
class StateGuard {
 public:
  explicit StateGuard(models::Model& model)
      : model_(model), training_(model.is_training()),
        rng_(at::detail::getDefaultCPUGenerator().get_state()) {
    model_.eval();
  }
  ~StateGuard() {
    model_.train(training_);
    auto generator = at::detail::getDefaultCPUGenerator();  // shares the global state
    generator.set_state(rng_);
  }

 private:
  models::Model& model_;
  bool training_;
  torch::Tensor rng_;
};

}  // namespace

HessianProbe::HessianProbe(std::vector<ProbeSpec> specs, std::filesystem::path dir, uint64_t seed)
    : specs_(std::move(specs)), dir_(std::move(dir)), seed_(seed) {
  for (const auto& spec : specs_) {
    if (detail::find_probe_type(spec.type) == nullptr) {
      throw std::invalid_argument("unknown probe type '" + spec.type + "'");
    }
  }
}

void HessianProbe::on_train_begin(Trainer& trainer) {
  if (!dir_.empty()) {
    std::filesystem::create_directories(dir_);
    writer_ = std::make_unique<JsonlWriter>(dir_ / "probes.jsonl");
    writer_->truncate_after_step(trainer.step() - 1);  // a resumed run redoes its current step
  }
  probe(trainer, trainer.step());
}

void HessianProbe::on_step_end(Trainer& trainer, const StepMetrics& m) { probe(trainer, m.step); }

void HessianProbe::probe(Trainer& trainer, int64_t step) {
  for (size_t index = 0; index < specs_.size(); ++index) {
    const auto& spec = specs_[index];
    if (!spec.due(step)) continue;
    const auto start = std::chrono::steady_clock::now();
    StateGuard guard(trainer.model());
    auto generator = at::make_generator<at::CPUGeneratorImpl>(
        seed_ * 1000003ULL + static_cast<uint64_t>(step) * 101ULL + index);
    detail::ProbeContext context(spec, detail::make_probe_target(trainer, spec),
                                 std::move(generator), dir_, step, index);
    detail::find_probe_type(spec.type)->run(context);
    auto& record = context.record;
    record["files"] = context.files;
    record["seconds"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (writer_) writer_->write(record);
    spdlog::debug("probe {} at step {}: {:.2f} s", spec.type, step, record["seconds"].get<double>());
  }
}

}  // namespace blockopt::experiments
