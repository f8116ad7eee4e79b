// Replays every optimizer oracle case in tests/data/optim through make_optimizer, in
// float64 and float32, and checks each recorded parameter against the case's tolerance.
#include <blockopt/experiments/verify.h>

#include "common.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace {

namespace fs = std::filesystem;
using blockopt::experiments::load_oracle_case;
using blockopt::experiments::verify_optimizer_case;

std::vector<std::string> optimizer_cases() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(blockopt::test::testdata_dir() / "optim")) {
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

struct OracleParam {
  std::string case_name;
  torch::Dtype dtype;
};

// Names the case in ctest's test list instead of the struct's bytes.
void PrintTo(const OracleParam& param, std::ostream* out) { *out << param.case_name << " " << param.dtype; }

class OptimOracle : public ::testing::TestWithParam<OracleParam> {};

// The replay is verify_optimizer_case (what `blockopt verify` runs); a failure names the case,
// dtype and the step and parameter of the first mismatch.
TEST_P(OptimOracle, MatchesTrajectory) {
  const auto& [case_name, dtype] = GetParam();
  const auto result = verify_optimizer_case(
      load_oracle_case(blockopt::test::testdata_dir() / "optim" / (case_name + ".json")), dtype);
  EXPECT_TRUE(result.pass) << "dtype " << dtype << ": " << result.to_json().dump();
  EXPECT_TRUE(result.first_mismatch.empty()) << result.first_mismatch;
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
