// Replays the four Hessian oracle cases (each through autograd and the closed form), checks
// the closed form against autograd at every depth and the matrix-free block norms against the
// autograd Hessian's.
#include <blockopt/experiments/verify.h>
#include <blockopt/hessian/mlp_block_norms.h>
#include <blockopt/hessian/mlp_hessian.h>
#include <blockopt/hessian/partition.h>
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
  std::vector<torch::Tensor> weights;  // W_1, [b_1], ..., models::MLP's order
  torch::Tensor x, y;
  bool bias = false;
};

Net random_net(std::vector<int64_t> widths, int64_t n, uint64_t seed, bool bias = false) {
  torch::manual_seed(seed);
  Net net;
  net.bias = bias;
  for (size_t l = 0; l + 1 < widths.size(); ++l) {
    net.weights.push_back((torch::randn({widths[l + 1], widths[l]}, torch::kDouble) /
                           std::sqrt(static_cast<double>(widths[l])))
                              .requires_grad_(true));
    if (bias) net.weights.push_back(torch::randn({widths[l + 1]}, torch::kDouble).requires_grad_(true));
  }
  net.x = torch::randn({n, widths.front()}, torch::kDouble);
  net.y = torch::randint(widths.back(), {n}, torch::kLong);
  return net;
}

torch::Tensor autograd_hessian(const Net& net, bm::Activation act, bm::Loss loss) {
  bh::HessianOperator op(
      [&] {
        return bm::compute_loss(bh::mlp_forward(net.weights, act, net.x, net.bias), net.y, loss);
      },
      net.weights);
  return bh::full_hessian(op);
}

}  // namespace

// Every depth from the linear model to three hidden layers, with and without biases, each
// activation and loss: the closed form equals the autograd row loop in float64.
TEST(HessianClosedForm, MatchesAutogradForEveryDepthActivationAndLoss) {
  const std::vector<std::vector<int64_t>> shapes = {{7, 6}, {7, 5, 6}, {7, 5, 4, 6}, {6, 4, 5, 3, 5}};
  for (auto act : {bm::Activation::ReLU, bm::Activation::Tanh, bm::Activation::GELU}) {
    for (auto loss : {bm::Loss::CrossEntropy, bm::Loss::MSE}) {
      for (const auto& widths : shapes) {
        for (bool bias : {false, true}) {
          auto net = random_net(widths, 64, 3, bias);
          auto expected = autograd_hessian(net, act, loss);
          auto got = bh::mlp_hessian_closed_form(net.weights, act, net.x, net.y, loss, bias);
          ASSERT_EQ(got.sizes(), expected.sizes());
          const double err = (got - expected).abs().max().item<double>() /
                             expected.abs().max().item<double>();
          EXPECT_LT(err, 1e-10) << "layers " << widths.size() - 1 << " bias " << bias << " act "
                                << static_cast<int>(act) << " loss " << static_cast<int>(loss);
        }
      }
    }
  }
}

// A last layer of 750 parameters spans two column chunks of the cross-entropy rank-one GEMM,
// whose upper triangle of chunks is computed and mirrored.
TEST(HessianClosedForm, MatchesAutogradWhenTheLastLayerSpansSeveralChunks) {
  auto net = random_net({16, 24, 30}, 48, 5, /*bias=*/true);
  auto expected = autograd_hessian(net, bm::Activation::Tanh, bm::Loss::CrossEntropy);
  auto got = bh::mlp_hessian_closed_form(net.weights, bm::Activation::Tanh, net.x, net.y,
                                         bm::Loss::CrossEntropy, /*bias=*/true);
  const double err =
      (got - expected).abs().max().item<double>() / expected.abs().max().item<double>();
  EXPECT_LT(err, 1e-10);
}

TEST(HessianClosedForm, RejectsParametersThatAreNoMLP) {
  auto net = random_net({5, 4, 3}, 8, 1, /*bias=*/true);
  const auto error = blockopt::test::error_of([&] {
    bh::mlp_hessian_closed_form(net.weights, bm::Activation::ReLU, net.x, net.y,
                                bm::Loss::CrossEntropy, /*bias=*/false);
  });
  EXPECT_NE(error.find("parameter 1 is not a weight matrix"), std::string::npos) << error;
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

namespace {

// ||H_ij||_F for the per-row partition, from the autograd Hessian.
torch::Tensor autograd_row_block_norms(const Net& net, bm::Activation act, bm::Loss loss) {
  std::vector<bh::ParamInfo> infos;
  for (size_t i = 0; i < net.weights.size(); ++i) {
    infos.push_back({"w" + std::to_string(i), net.weights[i].sizes().vec()});
  }
  return bh::block_norms(autograd_hessian(net, act, loss), bh::make_partition("per_row", infos));
}

double relative_error(const torch::Tensor& got, const torch::Tensor& expected) {
  return (got - expected).abs().max().item<double>() / expected.abs().max().item<double>();
}

}  // namespace

// The linear model and one hidden layer, each activation and loss, on one and two threads:
// the Gram contractions give the block norms of the autograd Hessian in float64.
TEST(HessianMatrixFree, BlockNormsMatchTheAutogradHessiansForEveryActivationAndLoss) {
  const std::vector<std::vector<int64_t>> shapes = {{7, 6}, {7, 5, 6}, {6, 9, 4}};
  const int threads = at::get_num_threads();
  for (auto act : {bm::Activation::ReLU, bm::Activation::Tanh, bm::Activation::GELU}) {
    for (auto loss : {bm::Loss::CrossEntropy, bm::Loss::MSE}) {
      for (const auto& widths : shapes) {
        const auto net = random_net(widths, 40, 11);
        const auto expected = autograd_row_block_norms(net, act, loss);
        for (int t : {1, 2}) {
          at::set_num_threads(t);
          const auto got = bh::mlp_block_norms(net.weights, act, net.x, net.y, loss);
          ASSERT_EQ(got.sizes(), expected.sizes());
          EXPECT_LT(relative_error(got, expected), 1e-10)
              << "layers " << widths.size() - 1 << " act " << static_cast<int>(act) << " loss "
              << static_cast<int>(loss) << " threads " << t;
        }
      }
    }
  }
  at::set_num_threads(threads);
}

// More classes than samples and a wide hidden layer: every pair of rows of both matrices (the
// off-diagonal blocks are what the seed paper's theorems are about) in float64 and float32.
TEST(HessianMatrixFree, ManyClassesInFloat64AndFloat32) {
  const auto net = random_net({12, 16, 40}, 30, 4);
  const auto expected = autograd_row_block_norms(net, bm::Activation::GELU, bm::Loss::CrossEntropy);
  const auto got = bh::mlp_block_norms(net.weights, bm::Activation::GELU, net.x, net.y,
                                       bm::Loss::CrossEntropy);
  EXPECT_LT(relative_error(got, expected), 1e-10);
  std::vector<torch::Tensor> single;
  for (const auto& w : net.weights) single.push_back(w.to(torch::kFloat));
  const auto got32 = bh::mlp_block_norms(single, bm::Activation::GELU, net.x, net.y,
                                         bm::Loss::CrossEntropy);
  EXPECT_EQ(got32.scalar_type(), torch::kFloat);
  // float32 rounding (2^-24 = 6e-8 per operation) over sums of N = 30 terms, relative to the
  // largest block norm.
  EXPECT_LT(relative_error(got32.to(torch::kDouble), expected), 1e-5);
}

TEST(HessianMatrixFree, RejectsWhatItCannotContract) {
  auto net = random_net({5, 4, 3, 2}, 8, 1);
  auto error = blockopt::test::error_of([&] {
    bh::mlp_block_norms(net.weights, bm::Activation::ReLU, net.x, net.y, bm::Loss::CrossEntropy);
  });
  EXPECT_NE(error.find("3 weight matrices"), std::string::npos) << error;
  net = random_net({5, 3}, 8, 1);
  error = blockopt::test::error_of([&] {
    bh::mlp_block_norms(net.weights, bm::Activation::ReLU, net.x, net.y + 3, bm::Loss::MSE);
  });
  EXPECT_NE(error.find("a target lies outside [0, 3)"), std::string::npos) << error;
  error = blockopt::test::error_of([&] {
    bh::mlp_block_norms(net.weights, bm::Activation::ReLU, net.x.narrow(1, 0, 4), net.y,
                        bm::Loss::MSE);
  });
  EXPECT_NE(error.find("inputs have 4 features, weight 0 expects 5"), std::string::npos) << error;
}

// The exact sums for a last layer alone equal those of its per-row block norms (a linear model:
// the features are the inputs), for CE and MSE; R follows from them.
TEST(HessianMatrixFree, LastLayerRowBlockSumsMatchTheBlockNorms) {
  for (auto loss : {bm::Loss::CrossEntropy, bm::Loss::MSE}) {
    const auto net = random_net({9, 30}, 25, 6);
    const auto norms = bh::mlp_block_norms(net.weights, bm::Activation::ReLU, net.x, net.y, loss);
    const auto squares = norms.square();
    const auto logits = torch::mm(net.x, net.weights[0].detach().t());
    const auto sums = bh::last_layer_row_block_sums(net.x, logits, net.y, loss);
    const double total = squares.sum().item<double>(), diagonal = squares.diagonal().sum().item<double>();
    EXPECT_NEAR(sums.total, total, 1e-12 * total);
    EXPECT_NEAR(sums.diagonal, diagonal, 1e-12 * diagonal);
    EXPECT_EQ(sums.blocks, 30);
    EXPECT_NEAR(sums.ratio(), (total - diagonal) / (29.0 * diagonal), 1e-10 * (total / diagonal));
  }
}
