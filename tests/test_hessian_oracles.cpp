// Replays the four Hessian oracle cases and checks the closed form against autograd.
#include <blockopt/experiments/verify.h>
#include <blockopt/hessian/operator.h>

#include "common.h"

#include <gtest/gtest.h>

namespace bh = blockopt::hessian;
namespace bm = blockopt::models;

class HessianOracle : public ::testing::TestWithParam<std::string> {};

TEST_P(HessianOracle, MatchesFloat64) {
  const auto path = (blockopt::test::testdata_dir() / "hessian" / (GetParam() + ".json")).string();
  const auto result = blockopt::experiments::verify_case(path, torch::kFloat64);
  EXPECT_TRUE(result.pass) << result.to_json().dump();
  EXPECT_LE(result.error, 1e-9);
}

INSTANTIATE_TEST_SUITE_P(HessianCases, HessianOracle,
                         ::testing::Values("linear_ce", "mlp1_relu_ce", "mlp1_relu_mse",
                                           "mlp3_tanh_ce"));

namespace {

struct Net {
  std::vector<torch::Tensor> weights;
  torch::Tensor x, y;
};

Net random_net(std::vector<int64_t> widths, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  Net net;
  for (size_t l = 0; l + 1 < widths.size(); ++l) {
    net.weights.push_back((torch::randn({widths[l + 1], widths[l]}, torch::kDouble) /
                           std::sqrt(static_cast<double>(widths[l])))
                              .requires_grad_(true));
  }
  net.x = torch::randn({n, widths.front()}, torch::kDouble);
  net.y = torch::randint(widths.back(), {n}, torch::kLong);
  return net;
}

torch::Tensor autograd_hessian(const Net& net, bm::Activation act, bm::Loss loss) {
  bh::HessianOperator op(
      [&] { return bm::compute_loss(bh::mlp_forward(net.weights, act, net.x), net.y, loss); },
      net.weights);
  return bh::full_hessian(op);
}

}  // namespace

TEST(HessianClosedForm, MatchesAutogradForEveryActivationAndLoss) {
  for (auto act : {bm::Activation::ReLU, bm::Activation::Tanh, bm::Activation::GELU}) {
    for (auto loss : {bm::Loss::CrossEntropy, bm::Loss::MSE}) {
      for (auto widths : {std::vector<int64_t>{7, 6}, std::vector<int64_t>{7, 5, 6}}) {
        auto net = random_net(widths, 64, 3);
        auto expected = autograd_hessian(net, act, loss);
        auto got = bh::mlp_hessian_closed_form(net.weights, act, net.x, net.y, loss);
        const double err = (got - expected).abs().max().item<double>() /
                           expected.abs().max().item<double>();
        EXPECT_LT(err, 1e-12) << "widths " << widths.size() << " act " << static_cast<int>(act)
                              << " loss " << static_cast<int>(loss);
      }
    }
  }
}

TEST(HessianOperatorTest, HvpMatchesFullHessianAndLeavesStateAlone) {
  auto net = random_net({5, 4, 3}, 32, 4);
  for (auto& w : net.weights) w.mutable_grad() = torch::full_like(w, 7.0);
  const auto before = net.weights[0].detach().clone();
  bh::HessianOperator op(
      [&] { return bm::compute_loss(bh::mlp_forward(net.weights, bm::Activation::Tanh, net.x),
                                    net.y, bm::Loss::CrossEntropy); },
      net.weights);
  auto h = bh::full_hessian(op);
  auto v = torch::randn({op.size()}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(op.hvp(v), h.mv(v), 1e-12, 1e-12));
  // Supported on the second tensor only: pruned backward, same product.
  auto v2 = torch::zeros_like(v);
  v2.slice(0, op.offsets()[1]).normal_();
  EXPECT_TRUE(torch::allclose(op.hvp(v2), h.mv(v2), 1e-12, 1e-12));
  auto vs = torch::randn({op.size(), 3}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(op.hvp_columns(vs), h.mm(vs), 1e-12, 1e-12));
  // Subset: the principal submatrix of the second tensor.
  auto sub = bh::full_hessian(op, {1});
  EXPECT_TRUE(torch::allclose(sub, h.slice(0, op.offsets()[1]).slice(1, op.offsets()[1])));
  EXPECT_TRUE(torch::equal(net.weights[0].detach(), before));
  for (auto& w : net.weights) EXPECT_TRUE(torch::equal(w.grad(), torch::full_like(w, 7.0)));
}
