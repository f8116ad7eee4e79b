#include <blockopt/experiments/verify.h>
#include <blockopt/hessian/mlp_hessian.h>
#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/partition.h>

#include <fmt/format.h>

namespace blockopt::experiments {

namespace {

// max |a - b| / max |b|
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const auto ref = b.to(torch::kDouble);
  const double scale = ref.abs().max().item<double>();
  const double diff = (a.to(torch::kDouble) - ref).abs().max().item<double>();
  return scale > 0 ? diff / scale : diff;
}

}  // namespace

// Rebuilds the manifest's MLP with the recorded weights and compares loss, gradient, the full
// Hessian (autograd row loop, and the closed form where it applies) and block_fro_rows.
VerifyResult verify_hessian_case(const OracleCase& oracle, torch::Dtype dtype) {
  const auto& m = oracle.manifest;
  VerifyResult result;
  result.case_name = m.at("case").get<std::string>();
  result.kind = "hessian";
  result.tolerance = m.at("tolerance").get<double>();
  if (dtype != torch::kFloat64) result.tolerance = std::max(result.tolerance, 1e-4);

  const auto& model = m.at("model");
  const auto act = models::parse_activation(model.at("activation").get<std::string>());
  const bool bias = model.at("bias").get<bool>();
  auto mlp = std::make_shared<models::MLP>(
      models::MLPOptions(model.at("widths").get<std::vector<int64_t>>()).activation(act).bias(bias));
  mlp->to(dtype);
  std::vector<torch::Tensor> params;
  std::vector<hessian::ParamInfo> infos;
  {
    torch::NoGradGuard no_grad;
    auto named = mlp->named_parameters();
    for (const auto& p : m.at("params")) {
      const auto name = p.at("name").get<std::string>();
      auto* param = named.find(name);
      if (param == nullptr) throw std::runtime_error(result.case_name + ": model has no " + name);
      param->copy_(oracle.tensor("param/" + name));
      params.push_back(*param);
      infos.push_back({name, param->sizes().vec()});
    }
  }
  const auto x = oracle.tensor("x").to(dtype);
  const auto y = oracle.tensor("y");
  const auto loss_kind = models::parse_loss(m.at("loss").get<std::string>());
  hessian::HessianOperator op(
      [&] { return models::compute_loss(mlp->forward(x), y, loss_kind); }, params);

  const auto rows = hessian::make_partition("per_row", infos);
  std::vector<std::pair<std::string, double>> errors = {
      {"loss", relative_error(op.loss(), oracle.tensor("loss").reshape({}))},
      {"grad", relative_error(op.gradient(), oracle.tensor("grad"))}};
  auto check_hessian = [&](const std::string& path, const torch::Tensor& h) {
    errors.emplace_back("hessian (" + path + ")", relative_error(h, oracle.tensor("hessian")));
    errors.emplace_back("block_fro_rows (" + path + ")",
                        relative_error(hessian::block_norms(h, rows), oracle.tensor("block_fro_rows")));
  };
  check_hessian("autograd", hessian::full_hessian(op));
  check_hessian("closed form",
                hessian::mlp_hessian_closed_form(params, act, x, y, loss_kind, bias));
  for (const auto& [what, error] : errors) {
    if (error >= result.error) {
      result.error = error;
      result.detail = fmt::format("largest relative error in {}", what);
    }
  }
  result.pass = result.error <= result.tolerance;
  return result;
}

}  // namespace blockopt::experiments
