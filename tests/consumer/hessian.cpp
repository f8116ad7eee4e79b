// Links blockopt::hessian alone: the full Hessian of L(w) = w^T A w / 2 is A.
#include <blockopt/hessian/operator.h>

#include <iostream>

int main() {
  torch::manual_seed(0);
  auto a = torch::randn({5, 5}, torch::kFloat64);
  a = a + a.t();  // symmetric: the Hessian of w^T A w / 2 is A
  auto w = torch::randn({5}, torch::dtype(torch::kFloat64).requires_grad(true));
  blockopt::hessian::HessianOperator op([&] { return 0.5 * w.dot(a.mv(w)); }, {w});
  const auto error = (blockopt::hessian::full_hessian(op) - a).abs().max().item<double>();
  std::cout << "hessian: max |H - A| = " << error << std::endl;
  return error < 1e-12 ? 0 : 1;
}
