#include <blockopt/optim/routing.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <numeric>
#include <sstream>

namespace blockopt::optim {

std::string to_lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

bool name_contains_any(const std::string& name, const std::vector<std::string>& keywords) {
  const auto lower = to_lower(name);
  return std::any_of(keywords.begin(), keywords.end(), [&](const std::string& k) {
    return lower.find(k) != std::string::npos;
  });
}

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
