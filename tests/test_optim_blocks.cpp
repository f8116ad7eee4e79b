// One block vocabulary: Adam-mini's partition, the matrix optimizers' routing and the Hessian
// probe's per_head partition classify the same names the same way, for blockopt's GPT,
// LLaMA / Hugging Face, diffusers and nanoGPT parameter names.
#include <blockopt/hessian/partition.h>
#include <blockopt/models/gpt.h>
#include <blockopt/optim/adam_mini.h>
#include <blockopt/optim/muon.h>
#include <blockopt/optim/routing.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace blockopt::optim {
namespace {

constexpr int64_t kWidth = 8;
constexpr int64_t kHeadDim = 4;

// The expected classes, written out by hand (independent of the keyword table).
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool query_or_key;       // split per head by Adam-mini (gpt) and the Hessian probe (per_head)
  bool embedding_or_head;  // routed to the AdamW fallback although it is a matrix
};

std::vector<NamedTensor> naming_conventions() {
  const std::vector<int64_t> m = {kWidth, kWidth}, v = {kWidth};
  return {
      // LLaMA / Hugging Face
      {"model.embed_tokens.weight", {16, kWidth}, false, true},
      {"model.layers.0.self_attn.q_proj.weight", m, true, false},
      {"model.layers.0.self_attn.k_proj.weight", m, true, false},
      {"model.layers.0.self_attn.v_proj.weight", m, false, false},
      {"model.layers.0.self_attn.o_proj.weight", m, false, false},
      {"model.layers.0.mlp.gate_proj.weight", {16, kWidth}, false, false},
      {"model.layers.0.input_layernorm.weight", v, false, false},
      {"lm_head.weight", {16, kWidth}, false, true},
      // diffusers attention
      {"attn1.to_q.weight", m, true, false},
      {"attn1.to_k.weight", m, true, false},
      {"attn1.to_v.weight", m, false, false},
      {"attn1.to_out.0.weight", m, false, false},
      {"attn1.to_q.bias", v, false, false},  // a vector is never split per head
      // nanoGPT (fused qkv: one matrix, not split per head)
      {"transformer.wte.weight", {16, kWidth}, false, true},
      {"transformer.wpe.weight", {kWidth, kWidth}, false, true},
      {"transformer.h.0.ln_1.weight", v, false, false},
      {"transformer.h.0.attn.c_attn.weight", {3 * kWidth, kWidth}, false, false},
      {"transformer.h.0.attn.c_proj.weight", m, false, false},
      {"transformer.h.0.mlp.c_fc.weight", {16, kWidth}, false, false},
  };
}

// blockopt's own GPT: its real parameter names, classified by hand.
std::vector<NamedTensor> gpt_parameters() {
  models::GPT gpt(models::GPTOptions().vocab(16).d_model(kWidth).layers(1).heads(2).context(8));
  std::vector<NamedTensor> tensors;
  for (const auto& item : gpt.named_parameters()) {
    const auto& name = item.key();
    const bool qk = name.find(".wq.") != std::string::npos || name.find(".wk.") != std::string::npos;
    const bool embedding = name.rfind("wte.", 0) == 0 || name.rfind("wpe.", 0) == 0 ||
                           name.rfind("lm_head.", 0) == 0;
    tensors.push_back({name, item.value().sizes().vec(), qk, embedding});
  }
  return tensors;
}

class OptimBlocksAgree : public ::testing::TestWithParam<std::vector<NamedTensor> (*)()> {};

TEST_P(OptimBlocksAgree, AdamMiniRoutingAndHessianProbe) {
  const auto expected = GetParam()();
  NamedParameters named;
  for (const auto& t : expected) named.insert(t.name, torch::zeros(t.shape));
  const auto infos = param_infos(named);

  AdamMini adam_mini(named, AdamMiniOptions().head_dim(kHeadDim).partition(AdamMiniPartition::gpt));
  const auto probe = hessian::make_partition("per_head", infos, kHeadDim);
  const auto routed = route_parameters(named, RoutingRule{});
  std::set<const void*> fallback;
  for (const auto& p : routed.fallback) fallback.insert(p.unsafeGetTensorImpl());

  ASSERT_EQ(adam_mini.partition().layouts.size(), expected.size());
  for (size_t t = 0; t < expected.size(); ++t) {
    SCOPED_TRACE(expected[t].name);
    const int64_t row = expected[t].shape.size() >= 2 ? expected[t].shape[1] : 1;
    const int64_t numel = infos[t].numel();
    EXPECT_EQ(adam_mini.partition().layouts[t].block_size == kHeadDim * row &&
                  expected[t].shape.size() >= 2,
              expected[t].query_or_key);
    EXPECT_EQ(probe.layouts[t].block_size,
              expected[t].query_or_key ? kHeadDim * row : numel);
    EXPECT_EQ(fallback.count(named[t].value().unsafeGetTensorImpl()) == 1,
              expected[t].embedding_or_head || expected[t].shape.size() < 2);
  }
  // Where both split per head, they give the same index ranges.
  for (const auto& block : probe.blocks) {
    if (!expected[block.tensor].query_or_key) continue;
    const auto& same = adam_mini.partition().blocks;
    EXPECT_TRUE(std::any_of(same.begin(), same.end(), [&](const Block& b) {
      return b.begin == block.begin && b.end == block.end;
    })) << block.name;
  }
}

INSTANTIATE_TEST_SUITE_P(NamingConventions, OptimBlocksAgree,
                         ::testing::Values(&naming_conventions, &gpt_parameters));

TEST(OptimBlocks, KeywordsIgnoreCaseOnBothSides) {
  EXPECT_TRUE(name_contains_any("Encoder.Q_PROJ.weight", {"q_proj"}));
  EXPECT_TRUE(name_contains_any("encoder.q_proj.weight", {"Q_Proj"}));
  EXPECT_FALSE(name_contains_any("encoder.v_proj.weight", {"q_proj", "k_proj"}));
}

TEST(OptimBlocks, HeadDimThatDoesNotDivideTheRowsIsRejected) {
  const std::vector<ParamInfo> infos = {{"attn.wq.weight", {6, 4}}};
  for (const char* kind : {"per_head", "gpt"}) {
    SCOPED_TRACE(kind);
    try {
      make_partition(kind, infos, 4);
      FAIL() << "no error";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("attn.wq.weight"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace blockopt::optim
