// The README's drop-in example: a blockopt optimizer in a plain LibTorch training loop.
#include <blockopt/blockopt.h>

#include <iostream>

int main() {
  torch::manual_seed(0);
  auto net = torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::ReLU(),
                                   torch::nn::Linear(16, 4));
  blockopt::optim::AdamW optimizer(net->parameters(), blockopt::optim::AdamWOptions(1e-2));
  auto x = torch::randn({64, 8});
  auto y = torch::randint(4, {64});
  double first = 0.0, last = 0.0;
  for (int step = 0; step < 50; ++step) {
    optimizer.zero_grad();
    auto loss = torch::cross_entropy_loss(net->forward(x), y);
    loss.backward();
    optimizer.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  // Matrix optimizers take named parameters: weights -> Muon, biases -> AdamW fallback.
  blockopt::optim::Muon muon(net->named_parameters(), blockopt::optim::MuonOptions(0.02));
  muon.step();
  std::cout << "loss " << first << " -> " << last << std::endl;
  return last < first ? 0 : 1;  // training must make progress
}
