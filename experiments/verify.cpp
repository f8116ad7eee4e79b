#include <blockopt/experiments/config.h>
#include <blockopt/experiments/optimizer_factory.h>
#include <blockopt/experiments/run_dir.h>
#include <blockopt/experiments/verify.h>

#include <fmt/format.h>

namespace blockopt::experiments {

nlohmann::json VerifyResult::to_json() const {
  nlohmann::json out = {{"case", case_name}, {"kind", kind},         {"error", error},
                        {"tolerance", tolerance}, {"pass", pass}, {"detail", detail}};
  if (!first_mismatch.empty()) out["first_mismatch"] = first_mismatch;
  return out;
}

torch::Tensor OracleCase::tensor(const std::string& key) const {
  if (!tensors.contains(key)) {
    throw std::runtime_error("oracle case " + manifest.value("case", std::string("?")) +
                             ": tensor '" + key + "' missing from its .pt file");
  }
  return tensors.at(key).toTensor();
}

OracleCase load_oracle_case(const std::filesystem::path& manifest_path) {
  if (!std::filesystem::exists(manifest_path)) {
    throw std::runtime_error("oracle case not found: " + manifest_path.string());
  }
  OracleCase oracle{nlohmann::json::parse(read_file(manifest_path)),
                    c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get())};
  const auto tensors_path = manifest_path.parent_path() / oracle.manifest.at("tensors").get<std::string>();
  const auto bytes = read_file(tensors_path);
  oracle.tensors = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end())).toGenericDict();
  return oracle;
}

VerifyResult verify_case(const std::filesystem::path& manifest_path, torch::Dtype dtype) {
  const auto oracle = load_oracle_case(manifest_path);
  const auto kind = oracle.manifest.at("kind").get<std::string>();
  if (kind == "optimizer") return verify_optimizer_case(oracle, dtype);
  if (kind == "hessian") return verify_hessian_case(oracle, dtype);
  throw std::runtime_error(manifest_path.string() + ": unknown case kind '" + kind + "'");
}

VerifyResult verify_optimizer_case(const OracleCase& oracle, torch::Dtype dtype) {
  const auto& m = oracle.manifest;
  VerifyResult result;
  result.case_name = m.at("case").get<std::string>();
  result.kind = "optimizer";
  result.tolerance = m.at(dtype == torch::kFloat64 ? "tolerance_float64" : "tolerance_float32")
                         .get<double>();
  const double max_move = m.at("max_move").get<double>();

  optim::NamedParameters named;
  for (const auto& p : m.at("params")) {
    const auto name = p.at("name").get<std::string>();
    named.insert(name, oracle.tensor("init/" + name).to(dtype).clone().set_requires_grad(true));
  }
  auto optimizer_config = YAML::Load(m.at("optimizer").dump());
  auto optimizer = optim::make_optimizer(
      named, ConfigNode::root(optimizer_config, result.case_name + ".json optimizer"));

  const auto param_steps = m.at("param_steps").get<std::vector<int64_t>>();
  const int64_t steps = m.at("steps").get<int64_t>();
  for (int64_t t = 1; t <= steps; ++t) {
    for (auto& item : named) {
      item.value().mutable_grad() = oracle.tensor(fmt::format("grad/{}/{}", t, item.key())).to(dtype);
    }
    optimizer->step();
    if (std::find(param_steps.begin(), param_steps.end(), t) == param_steps.end()) continue;
    for (const auto& item : named) {
      const auto expected = oracle.tensor(fmt::format("param/{}/{}", t, item.key()));
      const double error =
          (item.value().detach().to(torch::kFloat64) - expected).abs().max().item<double>() / max_move;
      if (error > result.error) {
        result.error = error;
        result.detail = fmt::format("largest error at step {}, parameter {}", t, item.key());
      }
      if (error > result.tolerance && result.first_mismatch.empty()) {
        result.first_mismatch = fmt::format("step {}, parameter {} (error {:.3g})", t, item.key(), error);
      }
    }
  }
  result.pass = result.error <= result.tolerance;
  return result;
}

}  // namespace blockopt::experiments
