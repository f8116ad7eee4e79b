// Links blockopt::optim alone: Muon and AdamW minimise ||W - T||_F^2 / 2 in plain LibTorch.
#include <blockopt/optim/adamw.h>
#include <blockopt/optim/muon.h>

#include <iostream>

int main() {
  torch::manual_seed(0);
  auto target = torch::randn({8, 4});
  auto weight = torch::zeros({8, 4}, torch::requires_grad());
  auto bias = torch::zeros({4}, torch::requires_grad());
  torch::OrderedDict<std::string, torch::Tensor> named;
  named.insert("weight", weight);
  named.insert("bias", bias);
  blockopt::optim::Muon muon(named, blockopt::optim::MuonOptions(0.05));
  blockopt::optim::AdamW adamw({bias}, blockopt::optim::AdamWOptions(1e-2));
  auto loss = [&] { return 0.5 * (weight - target).square().sum() + bias.square().sum(); };
  const double first = loss().item<double>();
  for (int step = 0; step < 20; ++step) {
    muon.zero_grad();
    loss().backward();
    muon.step();
    adamw.step();
  }
  const double last = loss().item<double>();
  std::cout << "optim: loss " << first << " -> " << last << std::endl;
  return last < first ? 0 : 1;
}
