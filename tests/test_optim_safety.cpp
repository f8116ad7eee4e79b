// What a LibTorch user can throw at a blockopt optimizer without corrupting memory or crashing:
// checkpoints of another model or configuration, state that does not match its parameter,
// unusual parameters (empty, 0-d, conv, non-contiguous, channels-last, sparse or missing
// gradients), options changed between steps, and bf16/fp16 parameters.
#include <blockopt/blockopt.h>

#include "common.h"
#include "optim_cases.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <sstream>
#include <type_traits>

namespace {

namespace bo = blockopt::optim;
using namespace blockopt::test;
using ::testing::HasSubstr;

std::vector<torch::Tensor> values_of(const bo::NamedParameters& named) {
  std::vector<torch::Tensor> values;
  for (const auto& item : named) values.push_back(item.value().detach().clone());
  return values;
}

void expect_equal_values(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
}

std::string save_to_string(const torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void load_from_string(torch::optim::Optimizer& optimizer, const std::string& bytes) {
  std::istringstream in(bytes);
  torch::serialize::InputArchive archive;
  archive.load_from(in);
  optimizer.load(archive);
}

void run_steps(torch::optim::Optimizer& optimizer, bo::NamedParameters& named, int64_t first,
               int64_t last) {
  for (int64_t t = first; t <= last; ++t) {
    set_grads(named, t);
    optimizer.step();
  }
}

class OptimSafety : public ::testing::TestWithParam<OptimizerCase> {};

// A checkpoint from another model with the same tensor count (one matrix has other rows):
// load() refuses it, names the parameter, and leaves the optimizer as it was.
TEST_P(OptimSafety, CheckpointOfAnotherModelIsRefusedAndStateKept) {
  auto other = make_params();
  auto other_optimizer = GetParam().make(other, 1e-2);
  run_steps(*other_optimizer, other, 1, 2);
  const auto foreign = save_to_string(*other_optimizer);

  auto build = [] {
    auto named = make_params();
    auto& fc = named["h.0.mlp.fc.weight"];
    fc = fc.detach().slice(0, 0, 12).clone().set_requires_grad(true);  // (12, 8) instead of (16, 8)
    auto& bias = named["h.0.mlp.fc.bias"];
    bias = bias.detach().slice(0, 0, 12).clone().set_requires_grad(true);
    return named;
  };
  auto named = build(), twin = build();
  auto optimizer = GetParam().make(named, 1e-2), twin_optimizer = GetParam().make(twin, 1e-2);
  run_steps(*optimizer, named, 1, 1);
  run_steps(*twin_optimizer, twin, 1, 1);

  const auto message = error_of([&] { load_from_string(*optimizer, foreign); });
  EXPECT_THAT(message, HasSubstr("state '"));
  EXPECT_THAT(message, HasSubstr("shape [12, 8]"));
  // The failed load changed nothing: the run goes on exactly like its twin.
  run_steps(*optimizer, named, 2, 3);
  run_steps(*twin_optimizer, twin, 2, 3);
  expect_equal_values(values_of(named), values_of(twin));
}

// State swapped between two parameters of different sizes: step() refuses it, naming the
// parameter, before the fused loops could read or write out of bounds.
TEST_P(OptimSafety, StateThatDoesNotMatchItsParameterIsRefusedAtStep) {
  auto named = make_params();
  auto optimizer = GetParam().make(named, 1e-2);
  run_steps(*optimizer, named, 1, 1);
  const auto before = values_of(named);
  auto& state = optimizer->state();
  std::swap(state[bo::state_key(named["h.0.mlp.fc.weight"])],
            state[bo::state_key(named["h.0.mlp.proj.weight"])]);
  std::swap(state[bo::state_key(named["wte.weight"])], state[bo::state_key(named["h.0.mlp.fc.bias"])]);
  set_grads(named, 2);
  const auto message = error_of([&] { optimizer->step(); });
  // ASGO may first see the swapped preconditioner's side (left for (8, 16), right for (16, 8)).
  EXPECT_THAT(message, ::testing::AnyOf(HasSubstr("state '"), HasSubstr("preconditioner of")));
  EXPECT_THAT(message, HasSubstr("parameter "));
  expect_equal_values(values_of(named), before);  // nothing was updated
}

// Every update writes the parameter in place, so a graph that saved it raises autograd's
// in-place error instead of silently using the new values (the fused loops write through
// data_ptr and bump the version counter themselves).
TEST_P(OptimSafety, StepInvalidatesGraphsThatSavedTheParameter) {
  auto named = make_params();
  auto optimizer = GetParam().make(named, 1e-2);
  for (auto& item : named) {
    auto graph = (item.value() * item.value()).sum();  // saves the parameter
    set_grads(named, 1);
    optimizer->step();
    EXPECT_THAT(error_of([&] { graph.backward(); }), HasSubstr("modified by an inplace operation"))
        << item.key();
  }
}

TEST_P(OptimSafety, SparseGradientIsRefused) {
  auto named = make_params();
  auto optimizer = GetParam().make(named, 1e-2);
  set_grads(named, 1);
  named["wte.weight"].mutable_grad() = named["wte.weight"].grad().to_sparse();
  EXPECT_THAT(error_of([&] { optimizer->step(); }), HasSubstr("sparse gradients are not supported"));
}

// Empty (0, k) and (k, 0), 0-d, frozen (grad undefined), channels-last 4-D and
// non-contiguous parameters step exactly like plain contiguous twins; a 4-D conv weight is the
// (out, in x kh x kw) matrix, as the spec says.
TEST_P(OptimSafety, UnusualParametersStepLikeTheirPlainTwins) {
  auto build = [](bool unusual) {
    torch::manual_seed(3);
    bo::NamedParameters named;
    auto add = [&](const std::string& name, torch::Tensor value) {
      named.insert(name, value.set_requires_grad(true));
    };
    add("h.0.empty_rows.weight", torch::randn({0, 4}, torch::kFloat64));
    add("h.0.empty_cols.weight", torch::randn({4, 0}, torch::kFloat64));
    add("h.0.scale", torch::randn({}, torch::kFloat64));
    const auto conv = torch::randn({6, 12}, torch::kFloat64);
    add("h.0.conv.weight", unusual ? conv.view({6, 3, 2, 2}).contiguous(torch::MemoryFormat::ChannelsLast)
                                   : conv);
    const auto proj = torch::randn({8, 5}, torch::kFloat64);
    add("h.0.proj.weight", unusual ? proj.t() : proj.t().contiguous());  // (5, 8)
    add("h.0.proj.bias", torch::randn({5}, torch::kFloat64));
    add("h.0.frozen.weight", torch::randn({5, 5}, torch::kFloat64));
    return named;
  };
  auto unusual = build(true), plain = build(false);
  ASSERT_FALSE(unusual["h.0.proj.weight"].is_contiguous());
  auto unusual_optimizer = GetParam().make(unusual, 1e-2), plain_optimizer = GetParam().make(plain, 1e-2);
  for (int64_t t = 1; t <= 3; ++t) {
    torch::manual_seed(50 + t);
    for (auto& item : plain) {
      if (item.key() == "h.0.frozen.weight") continue;
      auto grad = torch::randn_like(item.value(), torch::MemoryFormat::Contiguous);
      item.value().mutable_grad() = grad;
      auto& twin = unusual[item.key()];
      twin.mutable_grad() = grad.view(twin.sizes()).contiguous(twin.suggest_memory_format());
    }
    unusual_optimizer->step();
    plain_optimizer->step();
  }
  for (const auto& item : plain) {
    const auto& twin = unusual[item.key()];
    EXPECT_TRUE(torch::equal(twin.detach().reshape(item.value().sizes()), item.value().detach())) << item.key();
  }
  EXPECT_EQ(unusual_optimizer->state().count(bo::state_key(unusual["h.0.frozen.weight"])), 0u);
  EXPECT_EQ(unusual["h.0.empty_rows.weight"].sizes(), torch::IntArrayRef({0, 4}));
  EXPECT_TRUE(unusual["h.0.conv.weight"].is_contiguous(torch::MemoryFormat::ChannelsLast));
}

// Options are read at every step: doubling every group's lr before step 2 doubles step 2's
// move -lr (wd W + U), for the matrix and the fallback groups. Tolerance: the moves are
// differences of float64 weights |W| < 10, exact to an ulp (2e-15), against moves >= 1e-4.
TEST_P(OptimSafety, LearningRateChangedBetweenStepsIsUsed) {
  auto moves = [&](double factor) {
    auto named = make_params();
    auto optimizer = GetParam().make(named, 1e-2);
    run_steps(*optimizer, named, 1, 1);
    const auto before = values_of(named);
    for (auto& group : optimizer->param_groups()) group.options().set_lr(group.options().get_lr() * factor);
    run_steps(*optimizer, named, 2, 2);
    std::vector<torch::Tensor> move;
    const auto after = values_of(named);
    for (size_t i = 0; i < after.size(); ++i) move.push_back(after[i] - before[i]);
    return move;
  };
  const auto single = moves(1.0), doubled = moves(2.0);
  for (size_t i = 0; i < single.size(); ++i) {
    const double scale = single[i].abs().max().item<double>();
    ASSERT_GT(scale, 0.0);
    EXPECT_LE((doubled[i] - 2.0 * single[i]).abs().max().item<double>(), 1e-10 * scale) << "tensor " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Optim, OptimSafety, ::testing::ValuesIn(optimizer_cases()),
                         [](const auto& info) { return info.param.name; });

// A checkpoint saved with Adam-mini's `gpt` partition, loaded into one built with
// `elementwise`: load() rebuilds the gpt partition (before, the elementwise layout was kept and
// the fused loop walked past the end of the per-block v).
// What torch::optim::serialize writes for `optimizer`, with every parameter keyed by
// `key_of(param)` instead of the build's own key format.
std::string checkpoint_keyed_by(const bo::AdamW& optimizer,
                                const std::function<std::string(const torch::Tensor&)>& key_of) {
  torch::serialize::OutputArchive archive;
  const auto unit = archive.compilation_unit();
  torch::serialize::OutputArchive state(unit), groups(unit);
  const auto& param_groups = optimizer.param_groups();
  groups.write("param_groups/size", torch::tensor(static_cast<int64_t>(param_groups.size())));
  for (size_t g = 0; g < param_groups.size(); ++g) {
    torch::serialize::OutputArchive group(unit), options(unit);
    const auto& params = param_groups[g].params();
    group.write("params/size", torch::tensor(static_cast<int64_t>(params.size())));
    for (size_t i = 0; i < params.size(); ++i) {
      group.write("params/" + std::to_string(i), c10::IValue(key_of(params[i])));
      const auto found = optimizer.state().find(bo::state_key(params[i]));
      if (found == optimizer.state().end()) continue;
      torch::serialize::OutputArchive param_state(unit);
      static_cast<const bo::AdamWParamState&>(*found->second).serialize(param_state);
      state.write(key_of(params[i]), param_state);
    }
    static_cast<const bo::AdamWOptions&>(param_groups[g].options()).serialize(options);
    group.write("options", options);
    groups.write("param_groups/" + std::to_string(g), group);
  }
  archive.write("pytorch_version", c10::IValue("1.5.0"));
  archive.write("state", state);
  archive.write("param_groups", groups);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

// LibTorch's two key formats: decimal addresses (2.x) and printed pointers (1.x, "0x55d0...").
// Decimal keys resume bit for bit in every build. Printed pointers do where keys are strings;
// where keys are pointers they are refused with the state kept (parsed as decimals they would
// all read as address 0, one state for every parameter).
TEST(OptimSafetyCheckpointKeys, BothKeyFormatsResumeOrAreRefusedWithStateKept) {
  auto named = make_params();
  bo::AdamW optimizer(named.values(), bo::AdamWOptions(1e-2));
  run_steps(optimizer, named, 1, 3);
  const auto at_checkpoint = clone_params(named);
  const auto decimal = checkpoint_keyed_by(optimizer, [](const torch::Tensor& p) {
    return std::to_string(reinterpret_cast<uintptr_t>(p.unsafeGetTensorImpl()));
  });
  const auto printed = checkpoint_keyed_by(optimizer, [](const torch::Tensor& p) {
    std::ostringstream key;
    key << static_cast<const void*>(p.unsafeGetTensorImpl());
    return key.str();
  });
  run_steps(optimizer, named, 4, 6);
  const bool string_keys = std::is_same_v<bo::StateKey, std::string>;
  for (const auto* bytes : {&decimal, &printed}) {
    auto resumed_params = clone_params(at_checkpoint);
    bo::AdamW resumed(resumed_params.values(), bo::AdamWOptions(0.5));
    if (bytes == &printed && !string_keys) {
      EXPECT_THAT(error_of([&] { load_from_string(resumed, *bytes); }),
                  HasSubstr("written by another LibTorch version"));
      EXPECT_TRUE(resumed.state().empty());
      EXPECT_EQ(resumed.param_groups()[0].options().get_lr(), 0.5);
      continue;
    }
    load_from_string(resumed, *bytes);
    run_steps(resumed, resumed_params, 4, 6);
    expect_equal_values(values_of(resumed_params), values_of(named));
  }
}

TEST(OptimSafetyAdamMini, LoadRebuildsThePartitionOfTheCheckpoint) {
  auto original = make_params();
  const auto options = bo::AdamMiniOptions(1e-2).head_dim(4);
  bo::AdamMini gpt(original, bo::AdamMiniOptions(options).partition(bo::AdamMiniPartition::gpt));
  run_steps(gpt, original, 1, 3);
  const auto saved = save_to_string(gpt);
  auto resumed = clone_params(original);
  bo::AdamMini elementwise(resumed,
                           bo::AdamMiniOptions(options).partition(bo::AdamMiniPartition::elementwise));
  load_from_string(elementwise, saved);
  EXPECT_EQ(elementwise.partition_summary(), gpt.partition_summary());
  run_steps(gpt, original, 4, 5);
  run_steps(elementwise, resumed, 4, 5);
  expect_equal_values(values_of(resumed), values_of(original));
}

// A 1-D tensor added later to a matrix group (add_param_group is not virtual) is refused at
// the next step, naming the problem.
TEST(OptimSafetyMatrix, OneDimensionalTensorAddedToAMatrixGroupIsRefusedAtStep) {
  for (const auto& which : optimizer_cases()) {
    if (which.name == "adamw" || which.name == "adam_mini") continue;
    auto named = make_params();
    auto optimizer = which.make(named, 1e-2);
    auto matrix_options = optimizer->param_groups().at(0).options().clone();  // the matrix group
    auto vector = torch::randn({4}, torch::kFloat64).set_requires_grad(true);
    optimizer->add_param_group(torch::optim::OptimizerParamGroup({vector}, std::move(matrix_options)));
    set_grads(named, 1);
    vector.mutable_grad() = torch::ones_like(vector);
    EXPECT_THAT(error_of([&] { optimizer->step(); }), HasSubstr("1-D tensors belong in a fallback group"))
        << which.name;
  }
}

// The preconditioner records its side: options that later name the other side (possible for
// a square matrix without a shape change) are refused instead of mixing G G^T into G^T G.
TEST(OptimSafetyASGO, SideChangedAfterLoadIsRefused) {
  auto named = make_params();
  bo::ASGO asgo(named, bo::ASGOOptions(1e-2));
  run_steps(asgo, named, 1, 2);
  const auto saved = save_to_string(asgo);
  auto resumed = clone_params(named);
  bo::ASGO loaded(resumed, bo::ASGOOptions(1e-2).side(bo::ASGOSide::left));
  load_from_string(loaded, saved);  // installs the checkpoint's options: side auto
  static_cast<bo::ASGOOptions&>(loaded.param_groups().at(0).options()).side(bo::ASGOSide::left);
  set_grads(resumed, 3);
  EXPECT_THAT(error_of([&] { loaded.step(); }), HasSubstr("built on the right side"));
}

// nan_roots counts steps (not matrices) and is saved with the optimizer.
TEST(OptimSafetyASGO, NanRootsCountsStepsAndSurvivesACheckpoint) {
  auto named = make_params();
  bo::ASGO asgo(named, bo::ASGOOptions(1e-2).eps(0.0));
  for (auto& item : named) item.value().mutable_grad() = torch::zeros_like(item.value());
  asgo.step();  // P = 0 and eps = 0: 0/0 in every matrix's root
  EXPECT_EQ(asgo.nan_roots(), 1);
  auto resumed = clone_params(named);
  bo::ASGO loaded(resumed, bo::ASGOOptions(1e-2));
  load_from_string(loaded, save_to_string(asgo));
  EXPECT_EQ(loaded.nan_roots(), 1);
}

// ---- bf16 / fp16 ----

struct LowPrecisionCase {
  OptimizerCase optimizer;
  torch::Dtype dtype;
};
void PrintTo(const LowPrecisionCase& c, std::ostream* out) { *out << c.optimizer.name << " " << c.dtype; }

std::vector<LowPrecisionCase> low_precision_cases() {
  std::vector<LowPrecisionCase> cases;
  for (const auto& optimizer : optimizer_cases()) {
    for (const auto dtype : {torch::kBFloat16, torch::kHalf}) cases.push_back({optimizer, dtype});
  }
  return cases;
}

class OptimLowPrecision : public ::testing::TestWithParam<LowPrecisionCase> {};

// A bf16/fp16 parameter is updated through a float32 master copy with float32 state, so its
// trajectory is the float32 optimizer's fed the same (rounded) gradients: the low-precision
// parameter equals the float32 run's parameter rounded to its dtype, exactly (tolerance 0 by
// construction: the float32 arithmetic is the same). Weight decay 0.1 at lr 1e-2 is below a
// bf16 ulp per step, and a zero-gradient row with eps below fp16's smallest number gave 0/0:
// both are in the trajectory.
TEST_P(OptimLowPrecision, MatchesTheFloat32RunFedTheSameGradients) {
  const auto dtype = GetParam().dtype;
  auto low = make_params(torch::kFloat32);
  for (auto& item : low) item.value() = item.value().detach().to(dtype).set_requires_grad(true);
  bo::NamedParameters full;
  for (const auto& item : low) full.insert(item.key(), item.value().detach().to(torch::kFloat32).set_requires_grad(true));
  auto low_optimizer = GetParam().optimizer.make(low, 1e-2);
  auto full_optimizer = GetParam().optimizer.make(full, 1e-2);
  for (int64_t t = 1; t <= 6; ++t) {
    torch::manual_seed(200 + t);
    for (auto& item : low) {
      auto grad = torch::randn_like(item.value(), torch::kFloat32).to(dtype);
      if (item.value().dim() == 2) grad[0].zero_();  // a row without gradient
      item.value().mutable_grad() = grad;
      full[item.key()].mutable_grad() = grad.to(torch::kFloat32);
    }
    low_optimizer->step();
    full_optimizer->step();
  }
  for (const auto& item : low) {
    const auto& value = item.value();
    EXPECT_TRUE(torch::isfinite(value).all().item<bool>()) << item.key();
    EXPECT_TRUE(torch::equal(value.detach(), full[item.key()].detach().to(dtype))) << item.key();
  }
}

// A small MLP trained in bf16 (forward, backward, parameters) ends close to the float32 run.
// Tolerance: bf16 keeps 8 significant bits, so every product and sum carries a relative error of
// up to 2^-9; over the 40 steps these perturb the gradient direction by about 1%, which moves
// the loss decrease by about as much. We allow 10% of the float32 run's loss decrease: a
// stalled run (updates below a bf16 ulp, lost weight decay, NaN) misses it by far.
TEST_P(OptimLowPrecision, SmallModelTrainedInLowPrecisionMatchesFloat32) {
  if (GetParam().dtype != torch::kBFloat16) return;  // one training run per optimizer
  torch::manual_seed(7);
  const auto x = torch::randn({256, 16});
  const auto teacher = torch::randn({16, 4});
  const auto y = x.mm(teacher).argmax(1);
  auto train = [&](torch::Dtype dtype) {
    torch::manual_seed(8);
    bo::NamedParameters named;
    named.insert("h.0.fc.weight", (torch::randn({32, 16}) / 4.0).to(dtype).set_requires_grad(true));
    named.insert("h.0.fc.bias", torch::zeros({32}, dtype).set_requires_grad(true));
    named.insert("h.0.proj.weight", (torch::randn({4, 32}) / std::sqrt(32.0)).to(dtype).set_requires_grad(true));
    auto optimizer = GetParam().optimizer.make(named, 1e-2);
    auto loss_of = [&](const bo::NamedParameters& p, torch::Dtype compute) {
      auto hidden = torch::relu(torch::addmm(p["h.0.fc.bias"].to(compute), x.to(compute), p["h.0.fc.weight"].to(compute).t()));
      return torch::cross_entropy_loss(hidden.mm(p["h.0.proj.weight"].to(compute).t()).to(torch::kFloat32), y);
    };
    const double initial = loss_of(named, torch::kFloat32).item<double>();
    for (int step = 0; step < 40; ++step) {
      optimizer->zero_grad();
      loss_of(named, dtype).backward();
      optimizer->step();
    }
    torch::NoGradGuard no_grad;
    return std::make_pair(initial, loss_of(named, torch::kFloat32).item<double>());
  };
  const auto [initial, full] = train(torch::kFloat32);
  const auto [initial_low, low] = train(torch::kBFloat16);
  ASSERT_LT(full, initial);
  EXPECT_LE(std::abs(low - full), 0.1 * (initial - full))
      << "float32: " << initial << " -> " << full << ", bf16: " << initial_low << " -> " << low;
}

INSTANTIATE_TEST_SUITE_P(Optim, OptimLowPrecision, ::testing::ValuesIn(low_precision_cases()),
                         [](const auto& info) {
                           return info.param.optimizer.name +
                                  (info.param.dtype == torch::kBFloat16 ? "_bf16" : "_fp16");
                         });

}  // namespace
