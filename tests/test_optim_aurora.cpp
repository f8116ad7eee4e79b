// Aurora's defining properties (the oracle case aurora.json checks its trajectory): uniform
// row leverage of the tall polar factor, Muon with the simple quintic on square matrices, and
// one rule for both orientations.
#include <blockopt/optim/aurora.h>
#include <blockopt/optim/muon.h>

#include <gtest/gtest.h>

#include <vector>

namespace bo = blockopt::optim;

namespace {

// A tall direction whose rows have norms spread over four decades: polar(T) alone would
// leave its small rows with little leverage.
torch::Tensor uneven_tall_direction(int64_t m, int64_t n) {
  torch::manual_seed(3);
  const auto row_scales = torch::pow(10.0, torch::rand({m, 1}, torch::kDouble) * 4 - 2);
  return torch::randn({m, n}, torch::kDouble) * row_scales;
}

// max_i | ||row_i(O)||^2 m / n - 1 |: 0 when every row carries the leverage n/m.
double leverage_deviation(const torch::Tensor& ortho) {
  const double m = static_cast<double>(ortho.size(0)), n = static_cast<double>(ortho.size(1));
  return (ortho.square().sum(1) * (m / n) - 1).abs().max().item<double>();
}

}  // namespace

TEST(OptimAurora, RowLeverageApproachesNOverMWithEveryIteration) {
  const auto tall = uneven_tall_direction(48, 16);
  double previous = leverage_deviation(bo::newton_schulz(
      tall, 12, bo::NsEpsMode::add, std::nullopt, bo::NsCoefficients::simple));
  for (int64_t iterations = 1; iterations <= 4; ++iterations) {
    const auto ortho = bo::aurora_polar(tall, bo::AuroraOptions().pp_iterations(iterations));
    const double deviation = leverage_deviation(ortho);
    EXPECT_LT(deviation, previous) << iterations << " pp_iterations";
    previous = deviation;
  }
}

TEST(OptimAurora, WideDirectionIsTheTransposedTallRule) {
  const auto tall = uneven_tall_direction(40, 24);
  const bo::AuroraOptions options;
  // The same operations on the transposed memory layout: equal up to float64 round-off
  // (the suite's 1e-12 for equivalent computations), not bit for bit.
  EXPECT_TRUE(torch::allclose(bo::aurora_polar(tall.t().contiguous(), options),
                              bo::aurora_polar(tall, options).t(), 1e-12, 1e-12));
}

TEST(OptimAurora, SquareMatricesStepExactlyLikeMuonWithTheSimpleQuintic) {
  torch::manual_seed(5);
  const auto init_matrix = torch::randn({24, 24}, torch::kDouble);
  const auto init_bias = torch::randn({24}, torch::kDouble);
  const auto named = [&] {
    bo::NamedParameters n;
    n.insert("h.0.attn.wq.weight", init_matrix.clone().requires_grad_(true));
    n.insert("h.0.mlp.fc.bias", init_bias.clone().requires_grad_(true));
    return n;
  };
  auto aurora_params = named();
  auto muon_params = named();
  const bo::AuroraOptions aurora_options;
  bo::Aurora aurora(aurora_params, aurora_options);
  bo::Muon muon(muon_params, bo::MuonOptions(aurora_options.lr())
                                 .weight_decay(aurora_options.weight_decay())
                                 .ns_steps(aurora_options.polar_steps())
                                 .ns_coefficients(bo::NsCoefficients::simple));
  for (int step = 0; step < 4; ++step) {
    for (const auto& item : aurora_params) {
      auto grad = torch::randn_like(item.value());
      item.value().mutable_grad() = grad;
      muon_params[item.key()].mutable_grad() = grad.clone();
    }
    aurora.step();
    muon.step();
    for (const auto& item : aurora_params) {
      EXPECT_TRUE(torch::equal(item.value(), muon_params[item.key()]))
          << item.key() << " after step " << step + 1;
    }
  }
}
