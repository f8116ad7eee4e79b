// experiments/telemetry.h: the per-tensor update statistics against values built into the
// update (a known spectrum, known row norms), the first Adam step's update RMS (lr, by the
// rule), and a run with telemetry stepping bit for bit as one without.
#include <blockopt/experiments/report.h>
#include <blockopt/experiments/run.h>
#include <blockopt/experiments/telemetry.h>

#include "common.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

namespace ex = blockopt::experiments;
namespace fs = std::filesystem;

namespace {

// (6, 4) update dW = U diag(3, 1, 0.5, 0.25) V^T with orthonormal U (6, 4), V (4, 4).
torch::Tensor known_spectrum_update() {
  torch::manual_seed(3);
  const auto u = std::get<0>(torch::linalg_qr(torch::randn({6, 4}, torch::kFloat64)));
  const auto v = std::get<0>(torch::linalg_qr(torch::randn({4, 4}, torch::kFloat64)));
  return u.matmul(torch::diag(torch::tensor({3.0, 1.0, 0.5, 0.25}, torch::kFloat64))).matmul(v.t());
}

}  // namespace

TEST(Telemetry, SpectralNormConvergesFromBelow) {
  const auto delta = known_spectrum_update();
  const auto before = torch::ones({6, 4}, torch::kFloat64);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(0);
  double previous = 0.0;
  for (int iterations : {1, 2, 4, 40}) {
    const auto s = ex::update_statistics(before, before + delta, {}, iterations, generator);
    ASSERT_TRUE(s.update_spectral.has_value());
    EXPECT_LE(*s.update_spectral, 3.0 * (1 + 1e-12)) << iterations;  // ||A v|| <= sigma_1
    previous = *s.update_spectral;
  }
  // sigma_2 / sigma_1 = 1/3: 40 iterations leave an error of order (1/3)^80.
  EXPECT_NEAR(previous, 3.0, 1e-12);
}

TEST(Telemetry, NormsRowsAndDeadRowsOfAKnownUpdate) {
  // Rows of dW with norms 1, 2, 2, 4, 0 (a dead row) and 5e-4 (dead: < 1e-3 x median 2).
  const std::vector<double> row_norms = {1, 2, 2, 4, 0, 5e-4};
  auto delta = torch::zeros({6, 3}, torch::kFloat64);
  for (int64_t i = 0; i < 6; ++i) delta[i][i % 3] = row_norms[i] * (i % 2 ? -1 : 1);
  const auto before = torch::full({6, 3}, 2.0, torch::kFloat64);  // ||W||_F = 2 sqrt(18)
  const auto grad = torch::full({6, 3}, 0.5, torch::kFloat64);    // ||G||_F = 0.5 sqrt(18)
  auto generator = at::make_generator<at::CPUGeneratorImpl>(0);
  const auto s = ex::update_statistics(before, before + delta, grad, 5, generator);
  double sum_sq = 0.0;
  for (double r : row_norms) sum_sq += r * r;
  EXPECT_NEAR(s.update_ratio, std::sqrt(sum_sq) / (2 * std::sqrt(18.0)), 1e-15);
  EXPECT_NEAR(s.update_rms, std::sqrt(sum_sq / 18.0), 1e-15);
  EXPECT_NEAR(s.grad_norm, 0.5 * std::sqrt(18.0), 1e-14);
  EXPECT_TRUE(std::isinf(*s.row_max_over_min));  // a row did not move at all
  EXPECT_NEAR(*s.dead_rows, 2.0 / 6.0, 1e-15);
  double mean = 0.0, var = 0.0;
  for (double r : row_norms) mean += r / 6.0;
  for (double r : row_norms) var += (r - mean) * (r - mean) / 5.0;  // torch's std: n - 1
  EXPECT_NEAR(*s.row_cv, std::sqrt(var) / mean, 1e-14);
  // A vector has no rows and no spectrum.
  const auto bias = ex::update_statistics(torch::ones({3}), torch::ones({3}) * 1.5, {}, 5, generator);
  EXPECT_NEAR(bias.update_ratio, 0.5, 1e-7);
  EXPECT_FALSE(bias.update_spectral.has_value());
  EXPECT_FALSE(bias.row_cv.has_value());
}

namespace {

const char* kTelemetryRun = R"(name: telemetry
data: {type: gaussian, samples: 64, dim: 8, classes: 4, batch: 16}
model: {type: mlp, hidden: [16], bias: true}
optimizer: {name: adam, lr: 0.01}
train: {steps: 20, log_every: 1, eval_every: 10}
)";

fs::path run_in(const fs::path& dir, const std::vector<std::string>& overrides) {
  std::ofstream(dir / "run.yaml") << kTelemetryRun;
  ex::RunRequest request;
  request.config_path = (dir / "run.yaml").string();
  request.out_dir = (dir / "out").string();
  request.overrides = overrides;
  EXPECT_EQ(ex::run_experiment(request).result.status, ex::TrainResult::Status::Completed);
  return dir / "out";
}

}  // namespace

TEST(Telemetry, LogsEveryKStepsWithoutChangingTheRun) {
  const auto plain = run_in(blockopt::test::fresh_dir("telemetry_off"), {});
  const auto logged = run_in(blockopt::test::fresh_dir("telemetry_on"), {"telemetry={every: 10}"});
  // The same losses to the bit: telemetry reads the parameters and draws from its own generator.
  const auto losses = [](const fs::path& dir) {
    std::vector<double> out;
    for (const auto& record : ex::read_jsonl(dir / "metrics.jsonl")) {
      if (record.contains("loss")) out.push_back(record["loss"]);
      if (record.contains("eval_loss")) out.push_back(record["eval_loss"]);
    }
    return out;
  };
  EXPECT_EQ(losses(plain), losses(logged));
  EXPECT_FALSE(fs::exists(plain / "telemetry.jsonl"));
  const auto records = ex::read_jsonl(logged / "telemetry.jsonl");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0]["step"], 10);
  EXPECT_EQ(records[1]["step"], 20);
  EXPECT_EQ(records[0]["tensors"].size(), 4u);  // two weights, two biases
  for (const auto& [name, s] : records[0]["tensors"].items()) {
    EXPECT_GT(s["update_ratio"].get<double>(), 0.0) << name;
    EXPECT_GT(s["grad_norm"].get<double>(), 0.0) << name;
    EXPECT_EQ(s["row_cv"].is_null(), name.find("bias") != std::string::npos) << name;
  }
  // The report plots the median and the worst tensor of each of the six quantities.
  const auto html = ex::read_file(ex::write_report(logged));
  const auto section = html.find("Per-layer telemetry");
  ASSERT_NE(section, std::string::npos);
  size_t plots = 0;
  const std::string chart = R"(<div class="chart">)";
  for (auto at = html.find(chart, section); at != std::string::npos; at = html.find(chart, at + 1)) ++plots;
  EXPECT_EQ(plots, 12u);
}

// Adam's first step is lr m / (sqrt(v) + eps) with m = g, v = g^2 after bias correction: every
// element moves by lr |g| / (|g| + eps), so the update RMS is lr up to eps / |g|.
TEST(Telemetry, AdamFirstStepMovesEveryElementByTheLr) {
  const auto logged = run_in(blockopt::test::fresh_dir("telemetry_adam"),
                             {"telemetry={every: 1}", "train.steps=1", "optimizer.eps=1e-12"});
  const auto records = ex::read_jsonl(logged / "telemetry.jsonl");
  ASSERT_EQ(records.size(), 1u);
  for (const auto& [name, s] : records[0]["tensors"].items()) {
    // float32 parameters: the difference W' - W carries rounding of order 1e-7 |W| / lr.
    EXPECT_NEAR(s["update_rms"].get<double>(), 0.01, 1e-4) << name;
  }
}

TEST(Telemetry, ConfigErrorsNameTheKey) {
  const auto error = blockopt::test::error_of([] {
    ex::build_experiment(YAML::Load(std::string(kTelemetryRun) + "telemetry: {every: -1}\n"), "t.yaml");
  });
  EXPECT_NE(error.find("telemetry.every"), std::string::npos) << error;
}
