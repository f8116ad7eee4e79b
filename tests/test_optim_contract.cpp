// Contract every blockopt optimizer honours: undefined grads skip the parameter, zero_grad,
// save/load of state and group options (resume == uninterrupted, bit for bit), option
// validation, NaN gradients refused with state unchanged, state size per the spec's table.
#include <blockopt/blockopt.h>
#include <blockopt/optim/fused_adam.h>

#include "optim_cases.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <sstream>

namespace {

namespace bo = blockopt::optim;
using namespace blockopt::test;

class OptimContract : public ::testing::TestWithParam<OptimizerCase> {};

TEST_P(OptimContract, UndefinedGradSkipsParameter) {
  auto named = make_params();
  auto optimizer = GetParam().make(named, 1e-2);
  set_grads(named, 1);
  auto& skipped = named["h.0.mlp.fc.weight"];
  skipped.mutable_grad() = torch::Tensor();
  const auto before = skipped.detach().clone();
  optimizer->step();
  EXPECT_TRUE(torch::equal(skipped.detach(), before));
  EXPECT_EQ(optimizer->state().count(bo::state_key(skipped)), 0u);
  EXPECT_EQ(optimizer->state().size(), named.size() - 1);
}

TEST_P(OptimContract, ZeroGradClearsGradients) {
  auto named = make_params();
  auto optimizer = GetParam().make(named, 1e-2);
  set_grads(named, 1);
  optimizer->step();
  optimizer->zero_grad();
  for (const auto& item : named) {
    const auto& g = item.value().grad();
    EXPECT_TRUE(!g.defined() || g.abs().max().item<double>() == 0.0) << item.key();
  }
}

TEST_P(OptimContract, SaveLoadResumesBitForBitIncludingGroupOptions) {
  auto named = make_params();
  auto optimizer = GetParam().make(named, 1e-2);
  for (int64_t t = 1; t <= 3; ++t) {
    set_grads(named, t);
    optimizer->step();
  }
  std::stringstream buffer;
  {
    torch::serialize::OutputArchive archive;
    optimizer->save(archive);
    archive.save_to(buffer);
  }
  auto resumed_params = clone_params(named);
  auto resumed = GetParam().make(resumed_params, 0.5);  // different lr: load must restore it
  {
    torch::serialize::InputArchive archive;
    archive.load_from(buffer);
    resumed->load(archive);
  }
  ASSERT_EQ(resumed->param_groups().size(), optimizer->param_groups().size());
  for (size_t g = 0; g < optimizer->param_groups().size(); ++g) {
    EXPECT_EQ(resumed->param_groups()[g].options().get_lr(),
              optimizer->param_groups()[g].options().get_lr());
  }
  for (int64_t t = 4; t <= 6; ++t) {
    if (t == 5) {  // an lr change after loading (a schedule) acts identically
      for (auto* opt : {optimizer.get(), resumed.get()}) {
        for (auto& group : opt->param_groups()) group.options().set_lr(group.options().get_lr() * 0.5);
      }
    }
    set_grads(named, t);
    set_grads(resumed_params, t);
    optimizer->step();
    resumed->step();
  }
  for (const auto& item : named) {
    EXPECT_TRUE(torch::equal(item.value().detach(), resumed_params[item.key()].detach()))
        << GetParam().name << " " << item.key();
  }
}

TEST_P(OptimContract, RejectsNegativeLearningRate) {
  auto named = make_params();
  EXPECT_THROW(GetParam().make(named, -1e-3), std::invalid_argument);
}

TEST_P(OptimContract, NanGradientIsRefusedWithStateUnchanged) {
  auto named = make_params();
  auto optimizer = GetParam().make(named, 1e-2);
  set_grads(named, 1);
  optimizer->step();
  const auto before = clone_params(named);
  const auto bytes = bo::state_bytes(*optimizer);
  std::stringstream state_before;
  {
    torch::serialize::OutputArchive archive;
    optimizer->save(archive);
    archive.save_to(state_before);
  }
  set_grads(named, 2);
  named["h.0.mlp.proj.weight"].mutable_grad().select(0, 0).select(0, 0).fill_(std::nan(""));
  EXPECT_THROW(optimizer->step(), std::runtime_error);
  for (const auto& item : named) {
    EXPECT_TRUE(torch::equal(item.value().detach(), before[item.key()].detach())) << item.key();
  }
  EXPECT_EQ(bo::state_bytes(*optimizer), bytes);
  std::stringstream state_after;
  {
    torch::serialize::OutputArchive archive;
    optimizer->save(archive);
    archive.save_to(state_after);
  }
  EXPECT_EQ(state_before.str(), state_after.str());
}

TEST_P(OptimContract, StateBytesMatchSpecTable) {
  auto named = make_params();
  auto optimizer = GetParam().make(named, 1e-2);
  set_grads(named, 1);
  optimizer->step();
  int64_t elements = 0;
  for (const auto& item : named) elements += GetParam().state_elements(item.key(), item.value());
  EXPECT_EQ(bo::state_bytes(*optimizer), elements * 8);
}

INSTANTIATE_TEST_SUITE_P(Optim, OptimContract, ::testing::ValuesIn(optimizer_cases()),
                         [](const ::testing::TestParamInfo<OptimizerCase>& info) {
                           return info.param.name;
                         });

// ---- option validation specific to each optimizer ----

TEST(OptimContractValidation, BetasOutsideUnitInterval) {
  auto named = make_params();
  std::vector<torch::Tensor> params;
  for (const auto& item : named) params.push_back(item.value());
  EXPECT_THROW(bo::AdamW(params, bo::AdamWOptions().betas({1.0, 0.999})), std::invalid_argument);
  EXPECT_THROW(bo::AdamMini(named, bo::AdamMiniOptions().head_dim(4).betas({0.9, -0.1})),
               std::invalid_argument);
  EXPECT_THROW(bo::Muon(named, bo::MuonOptions().momentum(1.0)), std::invalid_argument);
  EXPECT_THROW(bo::Muon(named, bo::MuonOptions().fallback_betas({0.9, 1.5})), std::invalid_argument);
  EXPECT_THROW(bo::NorMuon(named, bo::NorMuonOptions().beta2(1.0)), std::invalid_argument);
  EXPECT_THROW(bo::ASGO(named, bo::ASGOOptions().beta2(-0.5)), std::invalid_argument);
}

TEST(OptimContractValidation, OneDimensionalTensorInMatrixGroup) {
  auto bias = torch::zeros({8}, torch::kFloat64);
  auto matrix = torch::zeros({8, 4}, torch::kFloat64);
  std::vector<torch::optim::OptimizerParamGroup> muon_groups;
  muon_groups.emplace_back(std::vector<torch::Tensor>{matrix, bias});
  EXPECT_THROW(bo::Muon(std::move(muon_groups)), std::invalid_argument);
  std::vector<torch::optim::OptimizerParamGroup> normuon_groups;
  normuon_groups.emplace_back(std::vector<torch::Tensor>{bias});
  EXPECT_THROW(bo::NorMuon(std::move(normuon_groups)), std::invalid_argument);
  std::vector<torch::optim::OptimizerParamGroup> asgo_groups;
  asgo_groups.emplace_back(std::vector<torch::Tensor>{bias});
  EXPECT_THROW(bo::ASGO(std::move(asgo_groups)), std::invalid_argument);
  // The same tensor is fine in an explicit fallback group.
  std::vector<torch::optim::OptimizerParamGroup> ok;
  ok.emplace_back(std::vector<torch::Tensor>{matrix});
  ok.emplace_back(std::vector<torch::Tensor>{bias},
                  std::make_unique<bo::MuonOptions>(bo::MuonOptions(3e-4).use_fallback(true)));
  EXPECT_NO_THROW(bo::Muon(std::move(ok)));
}

TEST(OptimContractValidation, HeadDimMustDivideRows) {
  auto named = make_params();  // wq has 8 rows
  EXPECT_THROW(bo::AdamMini(named, bo::AdamMiniOptions().head_dim(3)), std::invalid_argument);
}

// ---- Adam-mini elementwise is AdamW; fused loops agree with the reference tensor ops ----

std::vector<torch::Tensor> run_steps(torch::optim::Optimizer& optimizer, bo::NamedParameters& named,
                                     int64_t steps) {
  for (int64_t t = 1; t <= steps; ++t) {
    set_grads(named, t);
    optimizer.step();
  }
  std::vector<torch::Tensor> values;
  for (const auto& item : named) values.push_back(item.value().detach().clone());
  return values;
}

// Adam-mini `elementwise` and blockopt AdamW are the AdamW rule of torch::optim::AdamW, an
// independent implementation: the reference tensor-op paths equal it bit for bit (same op
// order), the fused loops agree to rounding (float64: 1e-14 of the largest weight).
TEST(OptimAdamMini, ElementwiseAndAdamWEqualTorchAdamW) {
  auto reference_params = make_params();
  std::vector<torch::Tensor> tensors;
  for (const auto& item : reference_params) tensors.push_back(item.value());
  torch::optim::AdamW torch_adamw(tensors, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  const auto expected = run_steps(torch_adamw, reference_params, 5);
  for (const bool fused : {false, true}) {
    auto mini_params = make_params(), adamw_params = make_params();
    bo::AdamMini mini(mini_params, bo::AdamMiniOptions(1e-2).weight_decay(0.1).partition(
                                       bo::AdamMiniPartition::elementwise));
    std::vector<torch::Tensor> adamw_tensors;
    for (const auto& item : adamw_params) adamw_tensors.push_back(item.value());
    bo::AdamW adamw(adamw_tensors, bo::AdamWOptions(1e-2).weight_decay(0.1));
    mini.set_fused(fused);
    adamw.set_fused(fused);
    const auto from_mini = run_steps(mini, mini_params, 5);
    const auto from_adamw = run_steps(adamw, adamw_params, 5);
    for (size_t i = 0; i < expected.size(); ++i) {
      for (const auto& actual : {from_mini[i], from_adamw[i]}) {
        if (fused) {
          const double error = (actual - expected[i]).abs().max().item<double>() /
                               expected[i].abs().max().item<double>();
          EXPECT_LE(error, 1e-14) << "fused, parameter " << i;
        } else {
          EXPECT_TRUE(torch::equal(actual, expected[i])) << "reference path, parameter " << i;
        }
      }
    }
  }
}

TEST(OptimFused, FusedLoopsMatchReference) {
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const double tolerance = dtype == torch::kFloat64 ? 1e-14 : 1e-6;
    for (const std::string which : {"adamw", "adam_mini"}) {
      auto fused_params = make_params(dtype), reference_params = make_params(dtype);
      auto build = [&](bo::NamedParameters& named, bool fused) -> OptimizerPtr {
        if (which == "adamw") {
          std::vector<torch::Tensor> params;
          for (const auto& item : named) params.push_back(item.value());
          auto opt = std::make_unique<bo::AdamW>(params, bo::AdamWOptions(1e-2).weight_decay(0.1));
          opt->set_fused(fused);
          return opt;
        }
        auto opt = std::make_unique<bo::AdamMini>(named, bo::AdamMiniOptions(1e-2).head_dim(4).weight_decay(0.1));
        opt->set_fused(fused);
        return opt;
      };
      auto fused = build(fused_params, true), reference = build(reference_params, false);
      for (int64_t t = 1; t <= 5; ++t) {
        set_grads(fused_params, t);
        set_grads(reference_params, t);
        fused->step();
        reference->step();
      }
      for (const auto& item : fused_params) {
        const auto& ref = reference_params[item.key()];
        const double error = (item.value() - ref).abs().max().item<double>() /
                             ref.abs().max().item<double>();
        EXPECT_LE(error, tolerance) << which << " " << item.key() << " " << dtype;
      }
    }
  }
}

TEST(OptimPartition, SummaryAndWholeTensorWarning) {
  const auto infos = bo::param_infos(make_params());
  auto gpt = bo::make_partition(infos, bo::partition_rule("gpt", 4));
  EXPECT_EQ(gpt.layouts[0].block_size, 8);   // wte: one block per row
  EXPECT_EQ(gpt.layouts[1].block_size, 32);  // wq: one block per head (4 rows x 8)
  EXPECT_FALSE(gpt.layouts[3].weight_decay); // bias
  EXPECT_TRUE(bo::partition_warnings(gpt, infos).empty());
  EXPECT_NE(bo::partition_summary(gpt, infos).find("total blocks"), std::string::npos);
  // nanoGPT's fused c_attn matches no v111 keyword: a whole-tensor block, warned about.
  const std::vector<bo::ParamInfo> nano = {{"h.0.attn.c_attn.weight", {24, 8}}};
  auto v111 = bo::make_partition(nano, bo::partition_rule("v111", 4));
  EXPECT_EQ(v111.layouts[0].block_size, 24 * 8);
  ASSERT_EQ(bo::partition_warnings(v111, nano).size(), 1u);
  // Custom rule: any function of the tensor's name and shape.
  auto custom = bo::make_partition(infos, [](const bo::ParamInfo& p) {
    return bo::BlockLayout{p.name, p.numel(), true};
  });
  EXPECT_EQ(custom.layouts[2].block_size, 128);
}

TEST(OptimRouting, DefaultKeywordsAndSummary) {
  auto named = make_params();
  bo::RoutingRule rule;
  auto routed = bo::route_parameters(named, rule);
  EXPECT_EQ(routed.matrix.size(), 3u);
  EXPECT_EQ(routed.fallback.size(), 2u);
  rule.fallback_keywords.push_back("proj");
  EXPECT_EQ(bo::route_parameters(named, rule).matrix.size(), 2u);
  EXPECT_NE(bo::routing_summary(named, rule).find("fallback h.0.mlp.proj.weight"), std::string::npos);
}

}  // namespace

namespace {

// bf16 Newton-Schulz on fp32 parameters (the official NorMuon code fails here): runs, stays
// finite and close to the fp32-NS result.
TEST(OptimMatrix, Bfloat16NewtonSchulzOnFloat32Parameters) {
  for (const bool normuon : {false, true}) {
    auto a = make_params(torch::kFloat32), b = make_params(torch::kFloat32);
    OptimizerPtr fp32, bf16;
    if (normuon) {
      fp32 = std::make_unique<bo::NorMuon>(a, bo::NorMuonOptions(0.02));
      bf16 = std::make_unique<bo::NorMuon>(b,
                                           bo::NorMuonOptions(0.02).ns_dtype(bo::NsDtype::bfloat16));
    } else {
      fp32 = std::make_unique<bo::Muon>(a, bo::MuonOptions(0.02));
      bf16 = std::make_unique<bo::Muon>(b, bo::MuonOptions(0.02).ns_dtype(bo::NsDtype::bfloat16));
    }
    for (int64_t t = 1; t <= 3; ++t) {
      set_grads(a, t);
      set_grads(b, t);
      fp32->step();
      bf16->step();
    }
    for (const auto& item : a) {
      const auto& other = b[item.key()];
      EXPECT_EQ(other.scalar_type(), torch::kFloat32);
      EXPECT_TRUE(torch::isfinite(other).all().item<bool>());
      EXPECT_LT((item.value() - other).abs().max().item<double>(), 0.02) << item.key();
    }
  }
}

// Singular P (rank-1 gradients, as for K projections behind LayerNorm): both roots finite.
TEST(OptimMatrix, AsgoRootsStayFiniteOnSingularPreconditioner) {
  for (const auto root : {bo::ASGORoot::polar_express, bo::ASGORoot::eigh}) {
    bo::NamedParameters named;
    named.insert("h.0.attn.wk.weight", torch::randn({16, 32}, torch::kFloat64).set_requires_grad(true));
    bo::ASGO asgo(named, bo::ASGOOptions(1e-2).root(root));
    for (int64_t t = 1; t <= 5; ++t) {
      auto u = torch::randn({16, 1}, torch::kFloat64), v = torch::randn({1, 32}, torch::kFloat64);
      named[0].value().mutable_grad() = u.mm(v);  // rank 1
      asgo.step();
    }
    EXPECT_TRUE(torch::isfinite(named[0].value()).all().item<bool>()) << bo::enum_name(root);
    EXPECT_EQ(asgo.nan_roots(), 0) << bo::enum_name(root);
  }
}

}  // namespace

// The vectorised finiteness check finds a NaN or an Inf anywhere: in the 16-wide body, in the
// tail, in either parallel chunk.
TEST(OptimFused, AllFiniteFindsEveryNonFiniteValue) {
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const int64_t n = (1 << 16) + 7;
    auto x = torch::randn({n}, dtype) * 1e30;
    EXPECT_TRUE(bo::all_finite(x)) << dtype;
    for (int64_t position : {int64_t{0}, int64_t{15}, int64_t{40000}, n - 3, n - 1}) {
      for (double bad : {std::nan(""), double(INFINITY), -double(INFINITY)}) {
        auto y = x.clone();
        y[position] = bad;
        EXPECT_FALSE(bo::all_finite(y)) << dtype << " " << bad << " at " << position;
      }
    }
    EXPECT_FALSE(bo::all_finite(x.slice(0, 0, n, 2).clone().fill_(INFINITY))) << dtype;
  }
}

// A zero gradient with eps = 0 makes P = 0 and the polar-express root 0/0: that step uses
// R = I instead and counts it (a run's summary reports the count), and the parameter stays
// finite. The next, non-zero gradient gives a finite root again.
TEST(OptimMatrix, AsgoNonFiniteRootFallsBackToIdentityAndIsCounted) {
  bo::NamedParameters named;
  named.insert("h.0.attn.wk.weight", torch::randn({8, 16}, torch::kFloat64).set_requires_grad(true));
  const auto before = named[0].value().detach().clone();
  bo::ASGO asgo(named, bo::ASGOOptions(1e-2).eps(0.0).weight_decay(0.0));
  named[0].value().mutable_grad() = torch::zeros({8, 16}, torch::kFloat64);
  asgo.step();
  EXPECT_EQ(asgo.nan_roots(), 1);
  EXPECT_TRUE(torch::equal(named[0].value(), before));  // M = 0, so U = R M = 0
  named[0].value().mutable_grad() = torch::randn({8, 16}, torch::kFloat64);
  asgo.step();
  EXPECT_EQ(asgo.nan_roots(), 1);
  EXPECT_TRUE(torch::isfinite(named[0].value()).all().item<bool>());
  EXPECT_FALSE(torch::equal(named[0].value(), before));
}
