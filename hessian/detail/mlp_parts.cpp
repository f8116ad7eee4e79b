#include <blockopt/hessian/detail/mlp_parts.h>

#include <cmath>
#include <stdexcept>

namespace blockopt::hessian::detail {

torch::Tensor activation(const torch::Tensor& z, models::Activation act) {
  switch (act) {
    case models::Activation::ReLU: return torch::relu(z);
    case models::Activation::Tanh: return torch::tanh(z);
    case models::Activation::GELU: return torch::gelu(z);
  }
  throw std::invalid_argument("unknown activation");
}

std::pair<torch::Tensor, torch::Tensor> activation_derivatives(const torch::Tensor& z_in,
                                                              models::Activation act) {
  torch::AutoGradMode enable(true);
  auto z = z_in.detach().requires_grad_(true);
  auto first = torch::autograd::grad({activation(z, act).sum()}, {z}, {}, true, true)[0];
  torch::Tensor second;
  if (first.requires_grad()) {
    second = torch::autograd::grad({first.sum()}, {z}, {}, false, false, true)[0];
  }
  return {first.detach(), second.defined() ? second.detach() : torch::zeros_like(z_in)};
}

LogitCurvature logit_curvature(const torch::Tensor& logits, const torch::Tensor& targets,
                               models::Loss loss) {
  const auto n = static_cast<double>(logits.size(0));
  const int64_t classes = logits.size(1);
  const auto one_hot = torch::one_hot(targets, classes).to(logits.dtype());
  LogitCurvature out;
  if (loss == models::Loss::CrossEntropy) {
    const auto p = torch::softmax(logits, 1);
    out.curv = p / n;
    out.q = p / std::sqrt(n);
    out.r = (p - one_hot) / n;
  } else {
    const double scale = 2.0 / (n * static_cast<double>(classes));
    out.curv = torch::full_like(logits, scale);
    out.r = scale * (logits - one_hot);
  }
  return out;
}

}  // namespace blockopt::hessian::detail
