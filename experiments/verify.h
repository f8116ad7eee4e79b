#pragma once
// Replays an oracle case from tests/data (optimizer trajectories, full Hessians).
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <string>

namespace blockopt::experiments {

struct VerifyResult {
  std::string case_name;
  std::string kind;  // "optimizer" or "hessian"
  double error = 0.0;
  double tolerance = 0.0;
  bool pass = false;
  std::string detail;  // where the largest error occurred
  std::string first_mismatch;  // optimizer cases: the first step and parameter over tolerance
  nlohmann::json to_json() const;
};

struct OracleCase {
  nlohmann::json manifest;
  c10::impl::GenericDict tensors;
  torch::Tensor tensor(const std::string& key) const;  // throws naming the key if absent
};

// Reads <case>.json and the .pt it names (relative to the manifest's directory).
OracleCase load_oracle_case(const std::filesystem::path& manifest_path);

VerifyResult verify_case(const std::filesystem::path& manifest_path, torch::Dtype dtype);
VerifyResult verify_optimizer_case(const OracleCase& oracle, torch::Dtype dtype);
VerifyResult verify_hessian_case(const OracleCase& oracle, torch::Dtype dtype);

}  // namespace blockopt::experiments
