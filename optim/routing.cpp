#include <blockopt/optim/routing.h>

#include <functional>
#include <numeric>
#include <sstream>

namespace blockopt::optim {

bool RoutingRule::is_matrix(const std::string& name, const torch::Tensor& param) const {
  return param.dim() >= 2 && !name_contains_any(name, fallback_keywords);
}

RoutedParameters route_parameters(const NamedParameters& named_params, const RoutingRule& rule) {
  RoutedParameters routed;
  for (const auto& item : named_params) {
    (rule.is_matrix(item.key(), item.value()) ? routed.matrix : routed.fallback)
        .push_back(item.value());
  }
  return routed;
}

std::string routing_summary(const NamedParameters& named_params, const RoutingRule& rule) {
  std::ostringstream out;
  for (const auto& item : named_params) {
    out << (rule.is_matrix(item.key(), item.value()) ? "matrix   " : "fallback ") << item.key()
        << ' ' << item.value().sizes() << '\n';
  }
  return out.str();
}

torch::Tensor as_matrix(const torch::Tensor& param) {
  TORCH_CHECK(param.dim() >= 2, "as_matrix: expected a tensor with >= 2 dimensions, got ",
              param.sizes());
  const auto sizes = param.sizes();
  const auto cols = std::accumulate(sizes.begin() + 1, sizes.end(), int64_t{1}, std::multiplies<>());
  return param.reshape({sizes[0], cols});  // (out, rest); no division, so empty tensors work
}

}  // namespace blockopt::optim
