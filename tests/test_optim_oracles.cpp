// Replays every optimizer oracle case in ../shared/testdata/optim through make_optimizer, in
// float64 and float32, and checks each recorded parameter against the case's tolerance.
#include <blockopt/experiments/config.h>
#include <blockopt/experiments/optimizer_factory.h>
#include <blockopt/experiments/verify.h>

#include <gtest/gtest.h>

#include <filesystem>

namespace {

namespace fs = std::filesystem;
using blockopt::experiments::ConfigNode;
using blockopt::experiments::load_oracle_case;

std::vector<std::string> optimizer_cases() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(fs::path(BLOCKOPT_TESTDATA_DIR) / "optim")) {
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

struct OracleParam {
  std::string case_name;
  torch::Dtype dtype;
};

class OptimOracle : public ::testing::TestWithParam<OracleParam> {};

TEST_P(OptimOracle, MatchesTrajectory) {
  const auto& [case_name, dtype] = GetParam();
  const auto oracle =
      load_oracle_case(fs::path(BLOCKOPT_TESTDATA_DIR) / "optim" / (case_name + ".json"));
  const auto& m = oracle.manifest;
  const double tolerance =
      m.at(dtype == torch::kFloat64 ? "tolerance_float64" : "tolerance_float32").get<double>();
  const double max_move = m.at("max_move").get<double>();

  blockopt::optim::NamedParameters named;
  for (const auto& p : m.at("params")) {
    const auto name = p.at("name").get<std::string>();
    named.insert(name, oracle.tensor("init/" + name).to(dtype).clone().set_requires_grad(true));
  }
  auto optimizer = blockopt::optim::make_optimizer(
      named, ConfigNode::root(YAML::Load(m.at("optimizer").dump()), case_name));
  const auto param_steps = m.at("param_steps").get<std::vector<int64_t>>();
  for (int64_t t = 1; t <= m.at("steps").get<int64_t>(); ++t) {
    for (auto& item : named) {
      item.value().mutable_grad() = oracle.tensor(fmt::format("grad/{}/{}", t, item.key())).to(dtype);
    }
    optimizer->step();
    if (std::find(param_steps.begin(), param_steps.end(), t) == param_steps.end()) continue;
    for (const auto& item : named) {
      const auto expected = oracle.tensor(fmt::format("param/{}/{}", t, item.key()));
      const double error =
          (item.value().detach().to(torch::kFloat64) - expected).abs().max().item<double>() /
          max_move;
      EXPECT_LE(error, tolerance) << "case " << case_name << ", parameter " << item.key()
                                  << ", step " << t << ", dtype " << dtype;
    }
  }
}

std::vector<OracleParam> all_cases() {
  std::vector<OracleParam> params;
  for (const auto& name : optimizer_cases()) {
    params.push_back({name, torch::kFloat64});
    params.push_back({name, torch::kFloat32});
  }
  return params;
}

INSTANTIATE_TEST_SUITE_P(Optim, OptimOracle, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<OracleParam>& info) {
                           return info.param.case_name +
                                  (info.param.dtype == torch::kFloat64 ? "_float64" : "_float32");
                         });

}  // namespace
