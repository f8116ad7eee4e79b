// The NorMuon variants of the modded-nanogpt optimization track (options of Muon and NorMuon)
// and the torch.optim.Muon preset, each checked on its defining property or against a
// reference written here with plain tensor ops:
//   reduce: shorter_axis  v averages over the shorter axis: a wide matrix gets equal column
//                         norms, a tall one equal row norms;
//   hyperball             ||W||_F stays at its initial value, weight decay does nothing, and a
//                         step is lr ||W|| along U / ||U||;
//   update_floor          every row (tensor) reaches ||U_i|| / ||W_i|| >= f, rows (tensors)
//                         already there are unchanged bit for bit, lifted ones keep direction;
//   MuonOptions::torch_compat()  steps like torch.optim.Muon (torch/optim/_muon.py).
#include <blockopt/blockopt.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace bo = blockopt::optim;

// Names the matrix optimizers route to their matrix group (routing.h).
constexpr const char* kTall = "h.0.mlp.fc.weight";     // (16, 8)
constexpr const char* kWide = "h.0.mlp.proj.weight";   // (8, 16)
constexpr const char* kSquare = "h.0.attn.wq.weight";  // (8, 8)

bo::NamedParameters matrices(torch::Dtype dtype, double init_scale = 1.0) {
  torch::manual_seed(11);
  const auto init = [&](int64_t rows, int64_t cols) {
    return (torch::randn({rows, cols}, torch::kDouble) * init_scale).to(dtype).requires_grad_(true);
  };
  bo::NamedParameters named;
  named.insert(kTall, init(16, 8));
  named.insert(kWide, init(8, 16));
  named.insert(kSquare, init(8, 8));
  return named;
}

bo::NamedParameters clone(const bo::NamedParameters& named) {
  bo::NamedParameters copy;
  for (const auto& item : named) {
    copy.insert(item.key(), item.value().detach().clone().requires_grad_(true));
  }
  return copy;
}

// The same seeded gradient for every parameter set of one test (step t).
void set_grads(std::vector<bo::NamedParameters*> sets, int64_t t) {
  torch::manual_seed(500 + t);
  std::vector<torch::Tensor> grads;
  for (const auto& item : *sets.front()) grads.push_back(torch::randn_like(item.value()));
  for (auto* named : sets) {
    size_t i = 0;
    for (auto& item : *named) item.value().mutable_grad() = grads[i++].clone();
  }
}

// D after one step from a zero buffer: B = (1-mu) G, D = (1-mu) G + mu B (nesterov).
torch::Tensor first_direction(const torch::Tensor& grad, double mu) {
  return (1 - mu) * grad + mu * ((1 - mu) * grad);
}

// Norms of the rows (dim 1) or columns (dim 0) of a matrix, relative spread max/min - 1.
double norm_spread(const torch::Tensor& matrix, int64_t dim) {
  const auto norms = matrix.norm(2, {dim});
  return (norms.max() / norms.min()).item<double>() - 1.0;
}

// ---- reduce: shorter_axis ------------------------------------------------------------------

// With beta2 = 0, v is this step's mean square, so O' = O / sqrt(v) has mean square 1 along
// the reduced axis and U (a multiple of O') equal norms there. From zero weights without
// weight decay the step is W1 = -lr U exactly (up to the product by lr).
// NOTE: tolerance 1e-8: the 1e-10 in O / (sqrt(v) + 1e-10), against sqrt(v) ~ 0.2 for these
// shapes, moves each norm by ~5e-10 relative; float64 round-off is far below.
TEST(OptimVariants, ShorterAxisEqualisesTheLongerAxisNorms) {
  const double tolerance = 1e-8;
  for (const auto reduce : {bo::NorMuonReduce::rows, bo::NorMuonReduce::shorter_axis}) {
    auto named = matrices(torch::kDouble, 0.0);
    bo::NorMuon optimizer(named, bo::NorMuonOptions(1.0).beta2(0.0).reduce(reduce));
    set_grads({&named}, 1);
    optimizer.step();
    const auto tall = -named[kTall].detach(), wide = -named[kWide].detach();
    EXPECT_LT(norm_spread(tall, 1), tolerance) << "tall: equal row norms";
    if (reduce == bo::NorMuonReduce::shorter_axis) {
      EXPECT_LT(norm_spread(wide, 0), tolerance) << "wide: equal column norms";
      EXPECT_GT(norm_spread(wide, 1), 1e-3) << "wide: rows not normalised";
    } else {
      EXPECT_LT(norm_spread(wide, 1), tolerance) << "wide under rows: equal row norms";
      EXPECT_GT(norm_spread(wide, 0), 1e-3) << "wide under rows: columns not normalised";
    }
    const auto& state = static_cast<const bo::NorMuonParamState&>(
        *optimizer.state().at(bo::state_key(named[kWide])));
    const std::vector<int64_t> expected = reduce == bo::NorMuonReduce::shorter_axis
                                              ? std::vector<int64_t>{1, 16}
                                              : std::vector<int64_t>{8, 1};
    EXPECT_EQ(state.second_moment().sizes().vec(), expected);
  }
}

// Tall and square matrices reduce over their columns either way: bit for bit the same steps.
TEST(OptimVariants, ShorterAxisIsRowsOnTallAndSquareMatrices) {
  auto rows = matrices(torch::kDouble);
  auto shorter = clone(rows);
  bo::NorMuon by_rows(rows, bo::NorMuonOptions(0.05).weight_decay(0.1));
  bo::NorMuon by_shorter(shorter, bo::NorMuonOptions(0.05).weight_decay(0.1).reduce(
                                      bo::NorMuonReduce::shorter_axis));
  for (int64_t t = 1; t <= 3; ++t) {
    set_grads({&rows, &shorter}, t);
    by_rows.step();
    by_shorter.step();
  }
  EXPECT_TRUE(torch::equal(rows[kTall], shorter[kTall]));
  EXPECT_TRUE(torch::equal(rows[kSquare], shorter[kSquare]));
  EXPECT_FALSE(torch::equal(rows[kWide], shorter[kWide]));
}

// Three steps of a wide matrix against the rule written out: momentum, NS, a per-column v
// with its EMA, O' = O / (sqrt(v) + 1e-10), U = O' ||O|| / (||O'|| + 1e-10) (preserve_norm,
// shape factor 1 for a wide matrix), W <- W (1 - lr wd) - lr U.
TEST(OptimVariants, ShorterAxisMatchesTheRuleWrittenOut) {
  auto named = matrices(torch::kDouble);
  const auto options =
      bo::NorMuonOptions(0.05).weight_decay(0.1).reduce(bo::NorMuonReduce::shorter_axis);
  bo::NorMuon optimizer(named, options);
  auto weight = named[kWide].detach().clone();
  auto buffer = torch::zeros_like(weight);
  auto v = torch::zeros({1, weight.size(1)}, torch::kDouble);
  const double mu = options.momentum(), b2 = options.beta2(), lr = options.lr();
  for (int64_t t = 1; t <= 3; ++t) {
    set_grads({&named}, t);
    const auto grad = named[kWide].grad().clone();
    optimizer.step();
    buffer = mu * buffer + (1 - mu) * grad;
    const auto direction = (1 - mu) * grad + mu * buffer;
    const auto ortho = bo::newton_schulz(direction, options.ns_steps(), options.ns_eps_mode());
    v = b2 * v + (1 - b2) * ortho.square().mean(0, /*keepdim=*/true);
    const auto normalized = ortho / (v.sqrt() + 1e-10);
    const auto update = normalized * (ortho.norm() / (normalized.norm() + 1e-10));
    weight = weight * (1 - lr * options.weight_decay()) - lr * update;
    // float64 round-off of equivalent computations (the suite's 1e-12)
    EXPECT_TRUE(torch::allclose(named[kWide].detach(), weight, 1e-12, 1e-12)) << "step " << t;
  }
}

// A wide matrix's v is (1, cols) under shorter_axis and (rows, 1) under rows: a checkpoint of
// one is refused by the other (by size, as any state of another configuration), and a
// shorter_axis run with every variant on resumes bit for bit.
TEST(OptimVariants, VariantStateSavesLoadsAndIsCheckedAgainstTheOptions) {
  const auto variants = bo::NorMuonOptions(0.05)
                            .reduce(bo::NorMuonReduce::shorter_axis)
                            .update_floor(0.3)
                            .update_floor_mode(bo::UpdateFloorMode::row)
                            .hyperball(true);
  auto named = matrices(torch::kDouble);
  bo::NorMuon optimizer(named, variants);
  for (int64_t t = 1; t <= 2; ++t) {
    set_grads({&named}, t);
    optimizer.step();
  }
  std::stringstream bytes;
  {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.save_to(bytes);
  }
  auto resumed_params = clone(named);
  bo::NorMuon resumed(resumed_params, bo::NorMuonOptions(0.05));
  {
    torch::serialize::InputArchive archive;
    archive.load_from(bytes);
    resumed.load(archive);  // restores the group options too
  }
  for (int64_t t = 3; t <= 4; ++t) {
    set_grads({&named, &resumed_params}, t);
    optimizer.step();
    resumed.step();
  }
  for (const auto& item : named) {
    EXPECT_TRUE(torch::equal(item.value(), resumed_params[item.key()])) << item.key();
  }
  // The (1, cols) state under options that expect (rows, 1): refused before any change.
  for (auto& group : resumed.param_groups()) {
    static_cast<bo::NorMuonOptions&>(group.options()).reduce(bo::NorMuonReduce::rows);
  }
  set_grads({&resumed_params}, 5);
  const auto before = resumed_params[kWide].detach().clone();
  EXPECT_THROW(resumed.step(), std::invalid_argument);
  EXPECT_TRUE(torch::equal(resumed_params[kWide], before));
}

// ---- hyperball -----------------------------------------------------------------------------

// ||W||_F relative to its initial value, in float64 whatever W's dtype.
double norm_drift(const torch::Tensor& weight, double initial) {
  return std::abs(weight.detach().to(torch::kDouble).norm().item<double>() / initial - 1.0);
}

// Four steps: every matrix keeps its initial Frobenius norm, to the round-off of a few
// renormalisations (float64 1e-12; float32 1e-6, a few 2^-24 roundings per step), and
// weight decay changes nothing (bit for bit against weight_decay 0).
template <typename Optimizer, typename Options>
void expect_hyperball_properties(const Options& options, torch::Dtype dtype) {
  const double tolerance = dtype == torch::kFloat64 ? 1e-12 : 1e-6;
  auto decayed = matrices(dtype);
  auto undecayed = clone(decayed);
  std::vector<double> initial;
  for (const auto& item : decayed) {
    initial.push_back(item.value().detach().to(torch::kDouble).norm().item<double>());
  }
  Optimizer with_decay(decayed, Options(options).weight_decay(0.5));
  Optimizer without_decay(undecayed, Options(options).weight_decay(0.0));
  for (int64_t t = 1; t <= 4; ++t) {
    set_grads({&decayed, &undecayed}, t);
    with_decay.step();
    without_decay.step();
    size_t i = 0;
    for (const auto& item : decayed) {
      EXPECT_LT(norm_drift(item.value(), initial[i++]), tolerance) << item.key() << " step " << t;
      EXPECT_TRUE(torch::equal(item.value(), undecayed[item.key()])) << item.key() << " step " << t;
    }
  }
}

TEST(OptimVariants, HyperballKeepsTheInitialNormAndIgnoresWeightDecay) {
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    expect_hyperball_properties<bo::Muon>(bo::MuonOptions(0.05).hyperball(true), dtype);
    expect_hyperball_properties<bo::NorMuon>(bo::NorMuonOptions(0.05).hyperball(true), dtype);
  }
}

// The first Muon step written out: W' = W - lr ||W|| U / ||U||, W1 = W' ||W|| / ||W'||.
TEST(OptimVariants, HyperballStepsLrTimesTheNormAlongTheNormalisedUpdate) {
  auto named = matrices(torch::kDouble);
  const auto options = bo::MuonOptions(0.05).hyperball(true);
  const auto initial = clone(named);
  bo::Muon optimizer(named, options);
  set_grads({&named}, 1);
  optimizer.step();
  for (const auto& item : initial) {
    const auto weight = item.value().detach();
    const auto direction = first_direction(named[item.key()].grad(), options.momentum());
    const auto ortho = bo::newton_schulz(direction, options.ns_steps(), options.ns_eps_mode());
    const auto moved = weight - options.lr() * weight.norm() * ortho / ortho.norm();
    const auto expected = moved * (weight.norm() / moved.norm());
    EXPECT_TRUE(torch::allclose(named[item.key()].detach(), expected, 1e-12, 1e-12)) << item.key();
  }
}

// ---- update_floor --------------------------------------------------------------------------

// Row (or whole-matrix) norms, (rows, 1) or 0-d.
torch::Tensor norms(const torch::Tensor& matrix, bo::UpdateFloorMode mode) {
  return mode == bo::UpdateFloorMode::row ? matrix.norm(2, {1}, /*keepdim=*/true) : matrix.norm();
}

// One step with and without the floor, lr 1 and no weight decay, so U = W0 - W1. The floor f
// sits strictly between two of the unfloored ratios ||U_i|| / ||W_i|| (rows of the tall
// matrix, whose rows are scaled over two decades; or the three matrices), so some are lifted
// and some not. Lifted: ratio f (to float64 round-off of U = W0 - W1, 1e-12) and direction
// unchanged; the others: bit for bit the unfloored step.
template <typename Optimizer, typename Options>
void expect_update_floor_properties(const Options& options, bo::UpdateFloorMode mode) {
  auto plain = matrices(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(4);
    plain[kTall].mul_(torch::pow(10.0, torch::rand({16, 1}, torch::kDouble) * 2 - 1));
  }
  auto floored = clone(plain);
  const auto initial = clone(plain);
  Optimizer unfloored_optimizer(plain, Options(options).lr(1.0).weight_decay(0.0));
  set_grads({&plain, &floored}, 1);
  unfloored_optimizer.step();

  // The unit each ratio is taken over: the rows of the tall matrix, or the three matrices.
  const std::vector<std::string> names =
      mode == bo::UpdateFloorMode::row ? std::vector<std::string>{kTall}
                                       : std::vector<std::string>{kTall, kWide, kSquare};
  std::vector<double> ratios;
  for (const auto& name : names) {
    const auto weight = initial[name].detach();
    const auto update = weight - plain[name].detach();
    const auto ratio = (norms(update, mode) / norms(weight, mode)).flatten();
    for (int64_t i = 0; i < ratio.numel(); ++i) ratios.push_back(ratio[i].item<double>());
  }
  std::sort(ratios.begin(), ratios.end());
  const size_t middle = ratios.size() / 2;
  const double floor = std::sqrt(ratios[middle - 1] * ratios[middle]);
  ASSERT_LT(ratios[middle - 1], floor);
  ASSERT_LT(floor, ratios[middle]);

  Optimizer floored_optimizer(floored, Options(options).lr(1.0).weight_decay(0.0).update_floor(floor)
                                           .update_floor_mode(mode));
  floored_optimizer.step();
  size_t lifted = 0;
  for (const auto& name : names) {
    const auto weight = initial[name].detach();
    const auto update = weight - floored[name].detach();
    const auto unfloored_update = weight - plain[name].detach();
    const auto ratio = (norms(update, mode) / norms(weight, mode)).flatten();
    const auto unfloored_ratio = (norms(unfloored_update, mode) / norms(weight, mode)).flatten();
    const auto rows = mode == bo::UpdateFloorMode::row ? weight.size(0) : 1;
    for (int64_t i = 0; i < rows; ++i) {
      const auto row = [&](const torch::Tensor& m) {
        return mode == bo::UpdateFloorMode::row ? m[i] : m;
      };
      const double r = ratio[i].item<double>(), before = unfloored_ratio[i].item<double>();
      EXPECT_GE(r, floor * (1 - 1e-12)) << name << " row " << i;
      if (before > floor) {
        EXPECT_TRUE(torch::equal(row(floored[name].detach()), row(plain[name].detach())))
            << name << " row " << i << " was above the floor and changed";
      } else {
        ++lifted;
        EXPECT_NEAR(r / floor, 1.0, 1e-12) << name << " row " << i;
        const auto direction = row(update) / row(update).norm();
        const auto unfloored_direction = row(unfloored_update) / row(unfloored_update).norm();
        EXPECT_TRUE(torch::allclose(direction, unfloored_direction, 1e-12, 1e-12))
            << name << " row " << i;
      }
    }
  }
  EXPECT_EQ(lifted, middle);
}

TEST(OptimVariants, UpdateFloorLiftsOnlyWhatIsBelowIt) {
  for (const auto mode : {bo::UpdateFloorMode::row, bo::UpdateFloorMode::tensor}) {
    SCOPED_TRACE(bo::enum_name(mode));
    expect_update_floor_properties<bo::Muon>(bo::MuonOptions(), mode);
    expect_update_floor_properties<bo::NorMuon>(bo::NorMuonOptions(), mode);
  }
}

// ---- torch.optim.Muon ----------------------------------------------------------------------

// torch.optim.Muon's step (PyTorch 2.9, torch/optim/_muon.py, _single_tensor_muon and
// _zeropower_via_newtonschulz) for one 2-D parameter, written from that file.
struct TorchMuon {
  double lr = 1e-3, weight_decay = 0.1, momentum = 0.95, eps = 1e-7;
  bool nesterov = true, use_addmm = false, match_rms_adamw = false;
  bool contiguous_transpose = false;  // torch: false
  int64_t ns_steps = 5;
  torch::Dtype ns_dtype = torch::kBFloat16;  // torch: grad.bfloat16()

  void step(torch::Tensor param, const torch::Tensor& grad, torch::Tensor& buffer) const {
    const double a = 3.4445, b = -4.7750, c = 2.0315;
    buffer.lerp_(grad, 1 - momentum);
    auto update = nesterov ? grad.lerp(buffer, momentum) : buffer;
    auto x = update.to(ns_dtype, /*non_blocking=*/false, /*copy=*/true);
    const bool tall = grad.size(0) > grad.size(1);
    if (tall) x = x.t();
    if (contiguous_transpose) x = x.contiguous();  // blockopt's layout (see the bf16 test)
    x.div_(x.norm().clamp_min(eps));
    for (int64_t k = 0; k < ns_steps; ++k) {
      const auto gram = x.mm(x.t());
      if (use_addmm) {
        const auto gram_update = torch::addmm(gram, gram, gram, b, c);
        x = torch::addmm(x, gram_update, x, a);
      } else {
        const auto gram_update = b * gram + c * gram.mm(gram);
        x = a * x + gram_update.mm(x);
      }
    }
    if (tall) x = x.t();
    const double rows = grad.size(0), cols = grad.size(1);
    const double ratio = match_rms_adamw ? 0.2 * std::sqrt(std::max(rows, cols))
                                         : std::sqrt(std::max(1.0, rows / cols));
    param.mul_(1 - lr * weight_decay);
    param.add_(x, -lr * ratio);
  }
};

// Four steps of the preset against TorchMuon on a tall, a wide and a square matrix (to
// `tolerance`; 0: bit for bit), and of its fallback on two other tensors against
// torch::optim::AdamW with its defaults (torch.optim.AdamW's; the fused loop agrees to 1e-14,
// see OptimAdamMini.ElementwiseAndAdamWEqualTorchAdamW).
void expect_torch_muon(const bo::MuonOptions& preset, const TorchMuon& reference,
                       double tolerance) {
  auto named = matrices(torch::kDouble);
  named.insert("wte.weight", torch::randn({12, 8}, torch::kDouble).requires_grad_(true));
  named.insert("h.0.mlp.fc.bias", torch::randn({16}, torch::kDouble).requires_grad_(true));
  auto mirror = clone(named);
  bo::Muon optimizer(named, preset);
  std::vector<torch::Tensor> fallback = {mirror["wte.weight"], mirror["h.0.mlp.fc.bias"]};
  torch::optim::AdamW adamw(fallback, torch::optim::AdamWOptions());
  std::vector<torch::Tensor> buffers;
  for (const auto* name : {kTall, kWide, kSquare}) {
    buffers.push_back(torch::zeros_like(named[name]));
  }
  for (int64_t t = 1; t <= 4; ++t) {
    set_grads({&named, &mirror}, t);
    optimizer.step();
    adamw.step();
    torch::NoGradGuard no_grad;
    size_t i = 0;
    for (const auto* name : {kTall, kWide, kSquare}) {
      reference.step(mirror[name], mirror[name].grad(), buffers[i++]);
    }
    for (const auto& item : named) {
      const bool fallback = !bo::RoutingRule{}.is_matrix(item.key(), item.value());
      const double bound = fallback ? 1e-14 : tolerance;
      EXPECT_TRUE(torch::allclose(item.value(), mirror[item.key()], bound, bound))
          << item.key() << " step " << t << " max diff "
          << (item.value() - mirror[item.key()]).abs().max().item<double>();
    }
  }
}

// Every rule but the bf16 Newton-Schulz, in float64 (NS in float64 on both sides): the
// momentum, the clamp eps, the lr adjustment of both adjust_lr_fn and the decay with the
// unadjusted lr, whether torch runs its NS with addmm or not (float64 round-off, 1e-12).
TEST(OptimVariants, TorchCompatPresetStepsLikeTorchOptimMuon) {
  for (const bool match_rms_adamw : {false, true}) {
    for (const bool use_addmm : {false, true}) {
      SCOPED_TRACE(std::string(match_rms_adamw ? "match_rms_adamw" : "original") +
                   (use_addmm ? " use_addmm" : ""));
      auto preset = bo::MuonOptions::torch_compat().ns_dtype(bo::NsDtype::parameter);
      if (match_rms_adamw) preset.scale(bo::MuonScale::match_rms_adamw);
      TorchMuon reference;
      reference.ns_dtype = torch::kFloat64;
      reference.use_addmm = use_addmm;
      reference.match_rms_adamw = match_rms_adamw;
      expect_torch_muon(preset, reference, 1e-12);
    }
  }
}

// The preset as it is, Newton-Schulz in bfloat16 like torch's: the same bf16 operations as
// torch.optim.Muon(use_addmm=True), bit for bit, on wide and square matrices. On a tall
// matrix torch multiplies the transposed view X^T in place of a contiguous copy, another bf16
// GEMM path that rounds differently; with that view made contiguous the steps are equal too.
// (torch's default use_addmm=False rounds b A + c A A and a X + B X in separate bf16 steps;
// the float64 test above covers that form.)
TEST(OptimVariants, TorchCompatPresetRunsTorchsBfloat16NewtonSchulzBitForBit) {
  TorchMuon reference;
  reference.use_addmm = true;
  reference.contiguous_transpose = true;
  expect_torch_muon(bo::MuonOptions::torch_compat(), reference, 0.0);
}

}  // namespace
