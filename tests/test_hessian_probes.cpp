// The probe callback: outputs in the run directory, and training is bit-identical with it.
#include <blockopt/experiments/detail/npy.h>
#include <blockopt/experiments/probes.h>
#include <blockopt/experiments/run.h>
#include <blockopt/hessian/mlp_hessian.h>
#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/partition.h>

#include "common.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>

namespace ex = blockopt::experiments;

namespace {

const char* kConfig = R"(
name: probe-test
seed: 3
data: {type: gaussian, samples: 200, dim: 10, classes: 5, batch: 50}
model: {type: mlp, hidden: [4], activation: relu}
optimizer: {name: adamw, lr: 1.0e-2}
train: {steps: 6, loss: cross_entropy}
probes:
  - {type: full_hessian, every: 3, partition: per_row}
  - {type: block_norms, steps: [2], partition: per_tensor, samples: 4, full_limit: 10}
  - {type: hutchinson, steps: [4], samples: 3}
  - {type: lanczos, steps: [5], lanczos_steps: 10, top_k: 3}
  - {type: slq, steps: [6], samples: 2, lanczos_steps: 8}
)";

std::vector<torch::Tensor> train(bool with_probes, const std::filesystem::path& dir) {
  auto yaml = YAML::Load(kConfig);
  if (!with_probes) yaml.remove("probes");
  auto e = ex::build_experiment(yaml, "test");
  ex::Trainer trainer(e.model, e.data, e.optimizer, e.schedule, e.trainer);
  if (with_probes) trainer.add_callback(std::make_shared<ex::HessianProbe>(e.probes, dir, e.seed));
  trainer.run();
  std::vector<torch::Tensor> params;
  for (const auto& p : e.model->parameters()) params.push_back(p.detach().clone());
  // Draw from the global generator: the probe must have left its state alone.
  params.push_back(torch::rand({4}));
  return params;
}

std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace

TEST(HessianProbe, WritesOutputsAndLeavesTrainingBitIdentical) {
  const auto dir = std::filesystem::temp_directory_path() / "blockopt_probe_test" / "hessian";
  std::filesystem::remove_all(dir.parent_path());
  auto plain = train(false, dir);
  auto probed = train(true, dir);
  ASSERT_EQ(plain.size(), probed.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(torch::equal(plain[i], probed[i])) << i;

  auto records = read_jsonl(dir / "probes.jsonl");
  ASSERT_EQ(records.size(), 3u + 4u);  // full_hessian at 0, 3, 6 and one each of the others
  std::map<std::string, nlohmann::json> last;
  for (const auto& r : records) last[r.at("type").get<std::string>()] = r;
  const auto& full = last.at("full_hessian");
  EXPECT_EQ(full.at("method"), "closed_form");
  EXPECT_EQ(full.at("params"), 10 * 4 + 4 * 5);
  EXPECT_EQ(full.at("blocks"), 4 + 5);
  EXPECT_TRUE(full.contains("spectrum"));
  EXPECT_EQ(last.at("block_norms").at("method"), "hutchinson");  // 60 params > full_limit 10
  EXPECT_EQ(last.at("lanczos").at("top_eigenvalues").size(), 3u);
  EXPECT_TRUE(last.at("slq").contains("js_mean"));
  EXPECT_TRUE(last.at("hutchinson").contains("trace_stderr"));
  for (const auto& r : records) {
    for (const auto& f : r.at("files")) {
      EXPECT_TRUE(std::filesystem::exists(dir / f.get<std::string>())) << f;
    }
  }
}

TEST(HessianProbe, NpyFilesLoadInNumpy) {
  const auto dir = std::filesystem::temp_directory_path() / "blockopt_npy_test";
  std::filesystem::create_directories(dir);
  ex::detail::write_npy(dir / "a.npy", torch::arange(6, torch::kDouble).reshape({2, 3}));
  ex::detail::write_npy(dir / "b.npy", torch::arange(5, torch::kLong));
  const std::string cmd =
      "/usr/bin/python3 -c \"import numpy as n; a=n.load('" + (dir / "a.npy").string() +
      "'); b=n.load('" + (dir / "b.npy").string() +
      "'); assert a.shape==(2,3) and a[1,2]==5 and b.dtype==n.int64 and b[4]==4\"";
  ASSERT_EQ(std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null"), 0)
      << "/usr/bin/python3 cannot import numpy: install the Debian package python3-numpy";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

TEST(HessianProbe, ConfigErrorsNameThePath) {
  auto yaml = YAML::Load(kConfig);
  yaml["probes"][1]["partition"] = "per_banana";
  try {
    ex::build_experiment(yaml, "cfg.yaml");
    FAIL() << "expected a ConfigError";
  } catch (const ex::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("partition"), std::string::npos) << e.what();
  }
  // The spec's example used `steps: 50` for Lanczos iterations: the error says what to write.
  auto lanczos = YAML::Load(kConfig);
  lanczos["probes"][3]["steps"] = 50;
  try {
    ex::build_experiment(lanczos, "cfg.yaml");
    FAIL() << "expected a ConfigError";
  } catch (const ex::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("probes[3].steps"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("lanczos_steps"), std::string::npos) << e.what();
  }
  // An unknown type lists every registered one (experiments/probes/registry.cpp).
  auto unknown = YAML::Load(kConfig);
  unknown["probes"][0]["type"] = "banana";
  const auto message =
      blockopt::test::error_of([&] { ex::build_experiment(unknown, "cfg.yaml"); });
  EXPECT_NE(message.find("expected block_norms, full_hessian, lanczos, hutchinson, slq, row_heterogeneity, output_ratio or row_ratio"),
            std::string::npos)
      << message;
}

namespace {

// The probe records of a 1-step run of `config` with `probes` (YAML) instead of kConfig's.
std::vector<nlohmann::json> probe_records(const std::string& probes, const std::string& name) {
  auto yaml = YAML::Load(kConfig);
  yaml["train"]["steps"] = 1;
  yaml["probes"] = YAML::Load(probes);
  const auto dir = std::filesystem::temp_directory_path() / ("blockopt_probe_" + name);
  std::filesystem::remove_all(dir);
  auto e = ex::build_experiment(yaml, "test");
  ex::Trainer trainer(e.model, e.data, e.optimizer, e.schedule, e.trainer);
  trainer.add_callback(std::make_shared<ex::HessianProbe>(e.probes, dir, e.seed));
  trainer.run();
  return read_jsonl(dir / "probes.jsonl");
}

}  // namespace

// The three block-norm methods give the same ratios; `auto` takes the full H where it is
// cheaper (N B^2 >= P^2 here: P = 60, B = 9) and the matrix-free contractions above full_limit.
TEST(HessianProbe, BlockNormMethodsAgreeAndAutoPicksByCost) {
  const auto records = probe_records(R"([
      {type: block_norms, steps: [0], partition: per_row, method: full},
      {type: block_norms, steps: [0], partition: per_row, method: matrix_free},
      {type: block_norms, steps: [0], partition: per_row},
      {type: block_norms, steps: [0], partition: per_row, full_limit: 10}])",
                                     "methods");
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0].at("method"), "closed_form");
  EXPECT_EQ(records[1].at("method"), "matrix_free");
  EXPECT_EQ(records[2].at("method"), "closed_form");
  EXPECT_EQ(records[3].at("method"), "matrix_free");
  for (const char* key : {"ratio_mean", "ratio_max", "ratio_sq_mean"}) {
    const double full = records[0].at(key).get<double>();
    EXPECT_NEAR(records[1].at(key).get<double>(), full, 1e-12 * full) << key;
  }
}

TEST(HessianProbe, MatrixFreeNamesWhyItDoesNotApply) {
  const auto error = blockopt::test::error_of([] {
    probe_records("[{type: block_norms, steps: [0], partition: per_tensor, method: matrix_free}]",
                  "matrix_free_error");
  });
  EXPECT_NE(error.find("block_norms probe, method matrix_free: partition per_tensor (needs per_row)"),
            std::string::npos)
      << error;
  auto yaml = YAML::Load(kConfig);
  yaml["probes"][1]["method"] = "closed";
  const auto config_error = blockopt::test::error_of([&] { ex::build_experiment(yaml, "cfg.yaml"); });
  EXPECT_NE(config_error.find("probes[1].method"), std::string::npos) << config_error;
  EXPECT_NE(config_error.find("expected auto, full or matrix_free"), std::string::npos) << config_error;
}

namespace {

// The record of a row_heterogeneity probe at step 0 of kConfig with `model` (tanh, if it has a
// hidden layer) and `loss`, and the exact Hessian there (closed form on the evaluation set).
std::pair<nlohmann::json, torch::Tensor> row_heterogeneity_at_start(const std::string& model,
                                                                    const std::string& loss) {
  auto yaml = YAML::Load(kConfig);
  yaml["model"] = YAML::Load(model);
  yaml["train"]["loss"] = loss;
  yaml["train"]["steps"] = 1;
  yaml["probes"] = YAML::Load("[{type: row_heterogeneity, steps: [0], rows: 4, samples: 8, lanczos_steps: 10}]");
  const auto dir = std::filesystem::temp_directory_path() / ("blockopt_rows_" + loss);
  std::filesystem::remove_all(dir);
  auto e = ex::build_experiment(yaml, "test");
  std::vector<torch::Tensor> weights;
  for (const auto& p : e.model->parameters()) weights.push_back(p.detach().to(torch::kDouble).clone());
  const auto batch = e.data->eval_batches().at(0);
  const auto exact = blockopt::hessian::mlp_hessian_closed_form(
      weights, blockopt::models::Activation::Tanh, batch.inputs.to(torch::kDouble), batch.targets, blockopt::models::parse_loss(loss));
  ex::Trainer trainer(e.model, e.data, e.optimizer, e.schedule, e.trainer);
  trainer.add_callback(std::make_shared<ex::HessianProbe>(e.probes, dir, e.seed));
  trainer.run();
  return {read_jsonl(dir / "probes.jsonl").at(0), exact};
}

}  // namespace

// Each sampled row's top eigenvalue is exact (Lanczos runs the row's full width, <= 10), and
// its trace, a Hutchinson estimate over the 8 SLQ start vectors, lies within 4 standard errors
// of the exact trace (Rademacher: Var(v^T A v) = 2 sum_{i != j} A_ij^2).
TEST(HessianProbe, RowHeterogeneityMatchesTheExactRowBlocks) {
  const auto [record, h] = row_heterogeneity_at_start("{type: mlp, hidden: [4], activation: tanh}", "cross_entropy");
  const auto& matrices = record.at("matrices");
  ASSERT_EQ(matrices.size(), 2u);
  const std::vector<int64_t> widths = {10, 4}, offsets = {0, 40};
  for (size_t m = 0; m < 2; ++m) {
    const auto& matrix = matrices[m];
    const auto rows = matrix.at("rows").get<std::vector<int64_t>>();
    EXPECT_EQ(rows, (std::vector<int64_t>{0, 1, 2, 3}));
    for (size_t k = 0; k < rows.size(); ++k) {
      const int64_t begin = offsets[m] + rows[k] * widths[m];
      const auto block = h.slice(0, begin, begin + widths[m]).slice(1, begin, begin + widths[m]);
      const double top = torch::linalg_eigvalsh(block, "L").max().item<double>();
      EXPECT_NEAR(matrix.at("top_eigenvalues")[k].get<double>(), top, 1e-8 * std::abs(top)) << m << " " << k;
      const double off_squares = (block.square().sum() - block.diagonal().square().sum()).item<double>();
      const double standard_error = std::sqrt(2.0 * off_squares / 8.0);
      EXPECT_NEAR(matrix.at("traces")[k].get<double>(), block.trace().item<double>(),
                  4.0 * standard_error + 1e-12)
          << m << " " << k;
    }
    EXPECT_GE(matrix.at("js_mean").get<double>(), 0.0);
    EXPECT_LE(matrix.at("js_max").get<double>(), 1.0);
  }
  EXPECT_TRUE(record.contains("top_cv_mean"));
}

// Linear model + MSE: every row's block is the same 2 X^T X / (N C), so the tops do not spread.
TEST(HessianProbe, RowHeterogeneityOfIdenticalRowsIsZero) {
  const auto [record, h] = row_heterogeneity_at_start("{type: linear}", "mse");
  const auto& matrix = record.at("matrices").at(0);
  EXPECT_LT(matrix.at("top_cv").get<double>(), 1e-10);
  EXPECT_NEAR(matrix.at("top_max_over_min").get<double>(), 1.0, 1e-10);
  auto yaml = YAML::Load(kConfig);
  yaml["probes"] = YAML::Load("[{type: row_heterogeneity, steps: [0], rows: 1}]");
  const auto error = blockopt::test::error_of([&] { ex::build_experiment(yaml, "cfg.yaml"); });
  EXPECT_NE(error.find("probes[0].rows"), std::string::npos) << error;
}

// A GPT (float64) on KJV bytes: the output_ratio probe's exact R over the 256 rows of lm_head
// equals R from the autograd Hessian's lm_head block (its rows' block norms) at step 0, and the
// row_ratio probe's estimate of it agrees within its standard errors.
TEST(HessianProbe, OutputRatioMatchesTheAutogradHeadBlock) {
  BLOCKOPT_REQUIRE_INSTALLED("/usr/bin/bible", "bible-kjv");
  const auto yaml = YAML::Load(R"(
name: output-ratio
seed: 1
runtime: {dtype: float64}
data: {type: text, corpus: kjv, tokenizer: {type: byte}, context: 8, batch: 2, eval_windows: 2}
model: {type: gpt, d_model: 4, layers: 1, heads: 1}
optimizer: {name: adamw, lr: 1.0e-3}
train: {steps: 1}
probes: [{type: output_ratio, steps: [0]}, {type: row_ratio, steps: [0], tensors: [lm_head], rows: 256, samples: 4}]
)");
  auto e = ex::build_experiment(yaml, "test");
  std::vector<torch::Tensor> inputs, targets;  // the whole evaluation set, as the probe takes it
  for (const auto& b : e.data->eval_batches()) {
    inputs.push_back(b.inputs);
    targets.push_back(b.targets);
  }
  const auto x = torch::cat(inputs), y = torch::cat(targets);
  std::vector<torch::Tensor> params;
  size_t head = 0;
  for (const auto& item : e.model->named_parameters()) {
    if (item.key() == "lm_head.weight") head = params.size();
    params.push_back(item.value());
  }
  blockopt::hessian::HessianOperator op(
      [&] { return blockopt::models::compute_loss(e.model->forward(x), y,
                                                  blockopt::models::Loss::CrossEntropy); },
      params);
  const auto h = blockopt::hessian::full_hessian(op, {head});  // (256 x 4)^2
  const auto squares = blockopt::hessian::block_norms(
                           h, blockopt::hessian::make_partition("per_row", {{"lm_head.weight", {256, 4}}}))
                           .square();
  const double total = squares.sum().item<double>(), diagonal = squares.diagonal().sum().item<double>();
  const double expected = (total - diagonal) / (255.0 * diagonal);

  const auto dir = std::filesystem::temp_directory_path() / "blockopt_output_ratio";
  std::filesystem::remove_all(dir);
  ex::Trainer trainer(e.model, e.data, e.optimizer, e.schedule, e.trainer);
  trainer.add_callback(std::make_shared<ex::HessianProbe>(e.probes, dir, e.seed));
  trainer.run();
  const auto record = read_jsonl(dir / "probes.jsonl").at(0);
  EXPECT_EQ(record.at("method"), "exact_gram");
  EXPECT_NEAR(record.at("R lm_head.weight").get<double>(), expected, 1e-9 * expected);
  EXPECT_EQ(record.at("ratio_of_mean_squares").at("lm_head.weight").at("blocks"), 256);
  // The row_ratio estimate (every row probed, 4 draws each) lies within 4.5 of its standard errors.
  const auto estimate = read_jsonl(dir / "probes.jsonl").at(1).at("ratio_of_mean_squares").at("lm_head.weight");
  EXPECT_LT(std::abs(estimate.at("ratio").get<double>() - expected), 4.5 * estimate.at("ratio_stderr").get<double>());
  // A tied head is refused with the reason.
  auto tied = yaml;
  tied["model"]["tie_weights"] = true;
  const auto error = blockopt::test::error_of([&] {
    auto t = ex::build_experiment(tied, "test");
    ex::Trainer tt(t.model, t.data, t.optimizer, t.schedule, t.trainer);
    tt.add_callback(std::make_shared<ex::HessianProbe>(t.probes, dir, t.seed));
    tt.run();
  });
  EXPECT_NE(error.find("needs a GPT with an untied lm_head"), std::string::npos) << error;
}
