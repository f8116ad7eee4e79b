// Links blockopt::models alone: an MLP maps (N, d) to (N, C) with the documented parameters.
#include <blockopt/models/mlp.h>

#include <iostream>

int main() {
  blockopt::models::MLP mlp(blockopt::models::MLPOptions({6, 16, 3}));
  const auto logits = mlp.forward(torch::randn({4, 6}));
  std::cout << "models: logits " << logits.sizes() << ", " << mlp.parameter_count()
            << " parameters" << std::endl;
  return logits.sizes() == torch::IntArrayRef({4, 3}) && mlp.parameter_count() == 6 * 16 + 16 * 3
             ? 0
             : 1;
}
