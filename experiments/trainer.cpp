#include <blockopt/experiments/trainer.h>
#include <blockopt/experiments/run_dir.h>
#include <blockopt/optim/state.h>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <cmath>
#include <sstream>

namespace blockopt::experiments {

TrainerOptions read_trainer_options(ConfigNode node) {
  TrainerOptions o;
  o.steps = node.get<int64_t>("steps", o.steps);
  node.check(o.steps > 0, "steps", "must be > 0");
  o.grad_accum = node.get<int64_t>("grad_accum", o.grad_accum);
  node.check(o.grad_accum >= 1, "grad_accum", "must be >= 1");
  o.grad_clip = node.get<double>("grad_clip", o.grad_clip);
  node.check(o.grad_clip >= 0.0, "grad_clip", "must be >= 0 (0 = off)");
  o.eval_every = node.get<int64_t>("eval_every", o.eval_every);
  node.check(o.eval_every >= 0, "eval_every", "must be >= 0 (0 = only at the end)");
  o.log_every = node.get<int64_t>("log_every", o.log_every);
  node.check(o.log_every >= 1, "log_every", "must be >= 1");
  o.checkpoint_every = node.get<int64_t>("checkpoint_every", o.checkpoint_every);
  node.check(o.checkpoint_every >= 0, "checkpoint_every", "must be >= 0 (0 = off)");
  const auto loss = node.get<std::string>("loss", "cross_entropy");
  try {
    o.loss = models::parse_loss(loss);
  } catch (const std::invalid_argument& e) {
    node.fail("loss", e.what());
  }
  return o;
}

const char* status_name(TrainResult::Status status) {
  switch (status) {
    case TrainResult::Status::Completed: return "completed";
    case TrainResult::Status::Diverged: return "diverged";
    case TrainResult::Status::Stopped: return "stopped";
  }
  return "unknown";
}

Trainer::Trainer(std::shared_ptr<models::Model> model, std::shared_ptr<data::DataSource> data,
                 std::shared_ptr<torch::optim::Optimizer> optimizer, LrSchedule schedule,
                 TrainerOptions options)
    : model_(std::move(model)),
      data_(std::move(data)),
      optimizer_(std::move(optimizer)),
      schedule_(schedule),
      options_(options) {
  for (const auto& group : optimizer_->param_groups()) {
    base_lrs_.push_back(group.options().get_lr());
  }
}

void Trainer::add_callback(std::shared_ptr<Callback> callback) {
  callbacks_.push_back(std::move(callback));
}

void Trainer::set_data_parallel(std::shared_ptr<distributed::DataParallel> parallel) {
  parallel_ = std::move(parallel);
}

void Trainer::set_optimizer_sharding(std::shared_ptr<distributed::OptimizerSharding> sharding) {
  sharding_ = std::move(sharding);
}

void Trainer::apply_schedule(int64_t step) {
  const double factor = schedule_.factor(step);
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(base_lrs_[i] * factor);
}

double Trainer::global_grad_norm() const {
  double sum_sq = 0.0;
  for (const auto& p : model_->parameters()) {
    if (p.grad().defined()) sum_sq += p.grad().to(torch::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(sum_sq);
}

double Trainer::elapsed() const {
  return elapsed_before_ +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - session_start_).count();
}

EvalMetrics Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  const bool was_training = model_->is_training();
  model_->eval();
  double loss_sum = 0.0, correct = 0.0, count = 0.0;
  const auto batches = data_->eval_batches();
  const size_t first = parallel_ ? parallel_->rank() : 0;
  const size_t stride = parallel_ ? parallel_->world_size() : 1;
  for (size_t b = first; b < batches.size(); b += stride) {
    const auto& batch = batches[b];
    auto logits = model_->forward(batch.inputs);
    const double n = static_cast<double>(batch.targets.numel());
    loss_sum += models::compute_loss(logits, batch.targets, options_.loss).item<double>() * n;
    correct += models::accuracy(logits, batch.targets) * n;
    count += n;
  }
  if (parallel_) {
    const auto sums = parallel_->sum({loss_sum, correct, count});
    loss_sum = sums[0], correct = sums[1], count = sums[2];
  }
  model_->train(was_training);
  EvalMetrics metrics{step_, loss_sum / count, correct / count, elapsed()};
  for (auto& cb : callbacks_) cb->on_eval(*this, metrics);
  return metrics;
}

TrainResult Trainer::run() {
  using Clock = std::chrono::steady_clock;
  session_start_ = Clock::now();
  TrainResult result;
  model_->train();
  for (auto& cb : callbacks_) cb->on_train_begin(*this);

  while (step_ < options_.steps) {
    const int64_t next = step_ + 1;
    const auto step_start = Clock::now();
    apply_schedule(next);
    optimizer_->zero_grad();
    double loss_value = 0.0;
    for (int64_t micro = 0; micro < options_.grad_accum; ++micro) {
      auto batch = data_->next_batch();
      if (parallel_) batch = {parallel_->local_rows(batch.inputs), parallel_->local_rows(batch.targets)};
      auto logits = model_->forward(batch.inputs);
      auto loss = models::compute_loss(logits, batch.targets, options_.loss) /
                  static_cast<double>(options_.grad_accum);
      if (parallel_ && micro + 1 == options_.grad_accum) parallel_->prepare_last_backward();
      loss.backward();
      loss_value += loss.item<double>();
    }
    if (parallel_) {
      parallel_->average_gradients();
      loss_value = parallel_->sum({loss_value})[0] / parallel_->world_size();
    }
    double grad_norm = global_grad_norm();
    if (!std::isfinite(loss_value) || !std::isfinite(grad_norm)) {
      result.status = TrainResult::Status::Diverged;
      const double bad = std::isfinite(loss_value) ? grad_norm : loss_value;
      result.message = fmt::format(
          "{} is {} at step {}; the run stopped before updating the parameters, and the last "
          "checkpoint (if any) holds the last good state",
          std::isfinite(loss_value) ? "gradient norm" : "loss",
          std::isnan(bad) ? "NaN" : (bad > 0 ? "+Inf" : "-Inf"), next);
      optimizer_->zero_grad();
      break;
    }
    if (options_.grad_clip > 0.0) {
      torch::nn::utils::clip_grad_norm_(model_->parameters(), options_.grad_clip);
    }
    for (auto& cb : callbacks_) cb->on_before_step(*this, next);
    if (sharding_) {
      sharding_->step();
    } else {
      optimizer_->step();
    }
    step_ = next;
    result.final_loss = loss_value;

    StepMetrics metrics;
    metrics.step = step_;
    metrics.loss = loss_value;
    metrics.lr = optimizer_->param_groups().front().options().get_lr();
    metrics.grad_norm = grad_norm;
    metrics.wall_time = elapsed();
    const double step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    metrics.items_per_second =
        static_cast<double>(data_->items_per_batch() * options_.grad_accum) / step_seconds;
    metrics.state_bytes = optim::state_bytes(*optimizer_);
    for (auto& cb : callbacks_) cb->on_step_end(*this, metrics);

    const bool last = step_ == options_.steps;
    if (last || (options_.eval_every > 0 && step_ % options_.eval_every == 0)) {
      auto eval = evaluate();
      if (!best_eval_ || eval.loss < best_eval_->loss) best_eval_ = eval;
      if (last) result.final_eval = eval;
    }
  }
  result.steps_done = step_;
  result.best_eval = best_eval_;
  result.wall_time = elapsed();
  elapsed_before_ = result.wall_time;
  for (auto& cb : callbacks_) cb->on_train_end(*this, result);
  return result;
}

void Trainer::write_state(torch::serialize::OutputArchive& archive) const {
  archive.write("step", torch::tensor(step_));
  archive.write("elapsed", torch::tensor(elapsed_before_, torch::kDouble));
  if (best_eval_) {
    archive.write("best_eval", torch::tensor({static_cast<double>(best_eval_->step),
                                              best_eval_->loss, best_eval_->accuracy},
                                             torch::kDouble));
  }
  torch::serialize::OutputArchive model_archive, optimizer_archive, data_archive;
  model_->save(model_archive);
  optimizer_->save(optimizer_archive);
  data_->save(data_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("data", data_archive);
  archive.write("rng", at::detail::getDefaultCPUGenerator().get_state());
}

void Trainer::read_state(torch::serialize::InputArchive& archive) {
  torch::Tensor step, elapsed, best, rng;
  archive.read("step", step);
  archive.read("elapsed", elapsed);
  step_ = step.item<int64_t>();
  elapsed_before_ = elapsed.item<double>();
  best_eval_.reset();
  if (archive.try_read("best_eval", best)) {
    best_eval_ = EvalMetrics{static_cast<int64_t>(best[0].item<double>()), best[1].item<double>(),
                             best[2].item<double>()};
  }
  torch::serialize::InputArchive model_archive, optimizer_archive, data_archive;
  archive.read("model", model_archive);
  archive.read("optimizer", optimizer_archive);
  archive.read("data", data_archive);
  model_->load(model_archive);
  // NOTE: an optimizer's load sets only the parameter states the archive holds: cleared first
  // so that no state of an earlier attempt survives.
  optimizer_->state().clear();
  optimizer_->load(optimizer_archive);
  data_->load(data_archive);
  archive.read("rng", rng);
  auto generator = at::detail::getDefaultCPUGenerator();  // a handle sharing the global state
  generator.set_state(rng);
}

namespace {

// zlib's CRC-32 of a byte range.
uint32_t crc32_of(const void* data, size_t size) {
  return static_cast<uint32_t>(::crc32_z(0L, static_cast<const Bytef*>(data), size));
}

// An exception's message; a c10 error's without its C++ backtrace.
std::string message_of(const std::exception& error) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&error)) {
    return c10_error->what_without_backtrace();
  }
  return error.what();
}

}  // namespace

void Trainer::save_checkpoint(const std::filesystem::path& path) const {
  if (sharding_) sharding_->gather_state_on_rank0();
  if (parallel_ && parallel_->rank() != 0) return;
  torch::serialize::OutputArchive state;
  write_state(state);
  if (sharding_) sharding_->release_unowned_state();
  std::ostringstream state_bytes;
  state.save_to(state_bytes);
  // NOTE: libtorch reads archives without checking their CRCs, so damage inside a tensor
  // would load silently: the state is stored as one byte tensor with its own CRC-32.
  const std::string blob = state_bytes.str();
  torch::serialize::OutputArchive archive;
  archive.write("state", torch::from_blob(const_cast<char*>(blob.data()),
                                          {static_cast<int64_t>(blob.size())}, torch::kUInt8));
  archive.write("state_crc32",
                torch::tensor(static_cast<int64_t>(crc32_of(blob.data(), blob.size()))));
  const std::filesystem::path tmp = path.string() + ".tmp";
  archive.save_to(tmp.string());
  // NOTE: between these renames only the previous checkpoint exists; load_checkpoint and
  // RunDirectory::claim resume from it then.
  if (std::filesystem::exists(path)) durable_rename(path, previous_checkpoint(path));
  durable_rename(tmp, path);
}


torch::serialize::InputArchive read_checkpoint(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw std::runtime_error("the file is missing");
  torch::serialize::InputArchive file;
  file.load_from(path.string());
  torch::Tensor blob, crc;
  file.read("state", blob);
  file.read("state_crc32", crc);
  blob = blob.contiguous();
  if (crc32_of(blob.data_ptr(), blob.numel()) != crc.item<int64_t>()) {
    throw std::runtime_error("its content does not match its CRC-32: the file is corrupted");
  }
  std::istringstream state_bytes(
      std::string(static_cast<const char*>(blob.data_ptr()), blob.numel()));
  torch::serialize::InputArchive state;
  state.load_from(state_bytes);
  return state;
}

void Trainer::restore(const std::filesystem::path& path) {
  auto archive = read_checkpoint(path);  // the whole file: damage is found before any change
  // NOTE: applying can still fail part-way (a key missing in one part) after other parts were
  // set: the state from before is put back then, so a failed attempt changes nothing.
  std::stringstream before;
  torch::serialize::OutputArchive snapshot;
  write_state(snapshot);
  snapshot.save_to(before);
  try {
    read_state(archive);
  } catch (...) {
    torch::serialize::InputArchive rollback;
    rollback.load_from(before);
    read_state(rollback);
    throw;
  }
  if (sharding_) sharding_->release_unowned_state();  // the file holds every rank's state
}

void Trainer::load_checkpoint(const std::filesystem::path& path) {
  std::string reason;
  try {
    restore(path);
    return;
  } catch (const std::exception& error) {
    reason = message_of(error);
  }
  const auto previous = previous_checkpoint(path);
  spdlog::warn("checkpoint {} cannot be loaded ({}); resuming from the previous checkpoint {}",
               path.string(), reason, previous.string());
  try {
    restore(previous);
  } catch (const std::exception& error) {
    throw std::runtime_error(fmt::format(
        "cannot resume: checkpoint {} cannot be loaded ({}), nor can the previous checkpoint {} "
        "({})",
        path.string(), reason, previous.string(), message_of(error)));
  }
}

}  // namespace blockopt::experiments
