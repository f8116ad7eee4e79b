// make_optimizer: every optimizer from YAML, strict keys (adam has no weight_decay), defaults
// from the C++ option structs, validation errors naming the YAML path.
#include <blockopt/blockopt.h>
#include <blockopt/experiments/config.h>
#include <blockopt/experiments/optimizer_factory.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace {

namespace bo = blockopt::optim;
using blockopt::experiments::ConfigError;
using blockopt::experiments::ConfigNode;

bo::NamedParameters params() {
  bo::NamedParameters named;
  named.insert("wte.weight", torch::zeros({12, 8}));
  named.insert("h.0.attn.wq.weight", torch::zeros({8, 8}));
  named.insert("h.0.mlp.fc.bias", torch::zeros({16}));
  return named;
}

std::unique_ptr<torch::optim::Optimizer> make(const std::string& yaml) {
  return bo::make_optimizer(params(), ConfigNode::root(YAML::Load(yaml), "test.yaml"));
}

TEST(OptimFactory, BuildsEveryOptimizer) {
  EXPECT_NE(dynamic_cast<bo::AdamW*>(make("{name: adamw}").get()), nullptr);
  EXPECT_NE(dynamic_cast<bo::AdamW*>(make("{name: adam}").get()), nullptr);
  EXPECT_NE(dynamic_cast<bo::AdamMini*>(make("{name: adam_mini, head_dim: 4}").get()), nullptr);
  EXPECT_NE(dynamic_cast<bo::Muon*>(make("{name: muon, fallback: {lr: 0.003}}").get()), nullptr);
  EXPECT_NE(dynamic_cast<bo::NorMuon*>(make("{name: normuon}").get()), nullptr);
  EXPECT_NE(dynamic_cast<bo::ASGO*>(make("{name: asgo, rms_target: none}").get()), nullptr);
}

// The layout a run writes to optimizer_layout.txt: routing for the matrix optimizers, blocks
// (with the whole-tensor warning) for Adam-mini, nothing for AdamW.
TEST(OptimFactory, ReportsTheParameterLayout) {
  auto layout_of = [](const bo::NamedParameters& named, const std::string& yaml) {
    std::string layout;
    bo::make_optimizer(named, ConfigNode::root(YAML::Load(yaml), "test.yaml"), &layout);
    return layout;
  };
  for (const auto* name : {"muon", "normuon", "asgo"}) {
    const auto layout = layout_of(params(), fmt::format("{{name: {}}}", name));
    EXPECT_NE(layout.find("matrix   h.0.attn.wq.weight"), std::string::npos) << name << layout;
    EXPECT_NE(layout.find("fallback wte.weight"), std::string::npos) << name << layout;
    EXPECT_NE(layout.find("fallback h.0.mlp.fc.bias"), std::string::npos) << name << layout;
  }
  EXPECT_NE(layout_of(params(), "{name: adam_mini, head_dim: 4}").find("total blocks"), std::string::npos);
  bo::NamedParameters fused_qkv;
  fused_qkv.insert("h.0.attn.c_attn.weight", torch::zeros({24, 8}));
  EXPECT_NE(layout_of(fused_qkv, "{name: adam_mini, partition: v111, head_dim: 4}").find("warning: "),
            std::string::npos);
  EXPECT_EQ(layout_of(params(), "{name: adamw}"), "");
}

TEST(OptimFactory, AdamHasNoWeightDecayKey) {
  EXPECT_THROW(make("{name: adam, weight_decay: 0.1}"), ConfigError);
  auto adam = make("{name: adam}");
  EXPECT_EQ(static_cast<const bo::AdamWOptions&>(adam->param_groups()[0].options()).weight_decay(), 0.0);
}

TEST(OptimFactory, UnknownKeysAndBadValuesNameThePath) {
  EXPECT_THROW(make("{name: muon, fallback: {lr: 0.003, bogus: 1}}"), ConfigError);
  EXPECT_THROW(make("{name: sgd}"), ConfigError);
  try {
    make("{name: muon, lr: -1}");
    FAIL() << "negative lr accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("test.yaml"), std::string::npos) << e.what();
  }
}

TEST(OptimFactory, RoutesFallbackWithItsOwnOptions) {
  auto muon = make("{name: muon, lr: 0.02, fallback: {lr: 0.003}}");
  ASSERT_EQ(muon->param_groups().size(), 2u);  // matrix (wq) + fallback (wte, bias)
  const auto& matrix = static_cast<const bo::MuonOptions&>(muon->param_groups()[0].options());
  const auto& fallback = static_cast<const bo::MuonOptions&>(muon->param_groups()[1].options());
  EXPECT_FALSE(matrix.use_fallback());
  EXPECT_EQ(matrix.lr(), 0.02);
  EXPECT_TRUE(fallback.use_fallback());
  EXPECT_EQ(fallback.lr(), 0.003);
  EXPECT_EQ(muon->param_groups()[1].params().size(), 2u);
  // A custom keyword list moves wq to the fallback: no matrix group left.
  EXPECT_EQ(make("{name: muon, fallback_keywords: [wte, wq]}")->param_groups().size(), 1u);
}

// The variant keys come from the field lists.
TEST(OptimFactory, VariantKeys) {
  auto normuon = make(
      "{name: normuon, reduce: shorter_axis, hyperball: true, update_floor: 0.35, "
      "update_floor_mode: row}");
  const auto& variants =
      static_cast<const bo::NorMuonOptions&>(normuon->param_groups()[0].options());
  EXPECT_EQ(variants.reduce(), bo::NorMuonReduce::shorter_axis);
  EXPECT_TRUE(variants.hyperball());
  EXPECT_EQ(variants.update_floor(), 0.35);
  EXPECT_EQ(variants.update_floor_mode(), bo::UpdateFloorMode::row);
  auto muon = make("{name: muon, hyperball: true, update_floor: 0.3}");
  const auto& muon_variants = static_cast<const bo::MuonOptions&>(muon->param_groups()[0].options());
  EXPECT_TRUE(muon_variants.hyperball());
  EXPECT_EQ(muon_variants.update_floor(), 0.3);
  EXPECT_EQ(muon_variants.update_floor_mode(), bo::UpdateFloorMode::tensor);
}

// `preset: torch` starts Muon from MuonOptions::torch_compat(); keys next to it override it.
TEST(OptimFactory, TorchPreset) {
  // Compared through the archive: every field, the fallback ones included.
  const auto archived = [](const bo::MuonOptions& options) {
    std::vector<c10::IValue> values;
    bo::MuonOptions::visit_fields(options, [&](const bo::Field& field, const auto& value) {
      if (!field.key().empty()) values.push_back(bo::detail::to_ivalue(value));
    });
    return values;
  };
  auto preset = make("{name: muon, preset: torch}");
  const auto& matrix = static_cast<const bo::MuonOptions&>(preset->param_groups()[0].options());
  EXPECT_EQ(archived(matrix), archived(bo::MuonOptions::torch_compat()));
  const auto& fallback = static_cast<const bo::MuonOptions&>(preset->param_groups()[1].options());
  EXPECT_EQ(fallback.lr(), 1e-3);
  EXPECT_EQ(fallback.weight_decay(), 0.01);
  auto moonlight = make("{name: muon, preset: torch, scale: match_rms_adamw, lr: 0.002}");
  const auto& overridden =
      static_cast<const bo::MuonOptions&>(moonlight->param_groups()[0].options());
  EXPECT_EQ(overridden.scale(), bo::MuonScale::match_rms_adamw);
  EXPECT_EQ(overridden.lr(), 0.002);
  EXPECT_EQ(overridden.weight_decay(), 0.1);
  EXPECT_THROW(make("{name: muon, preset: moonlight}"), ConfigError);
  EXPECT_THROW(make("{name: normuon, preset: torch}"), ConfigError);  // Muon only
}

}  // namespace
