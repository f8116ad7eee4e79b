#include <blockopt/models/gpt.h>
#include <blockopt/models/loss.h>

#include "common.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

namespace blockopt::models {
namespace {

namespace fs = std::filesystem;

GPTOptions tiny() { return GPTOptions().vocab(64).d_model(32).layers(2).heads(4).context(16); }

std::vector<std::string> names(const GPT& model) {
  std::vector<std::string> out;
  for (const auto& item : model.named_parameters()) out.push_back(item.key());
  return out;
}

TEST(ModelsGPT, ParameterNamesMatchTheOracleNaming) {
  torch::manual_seed(0);
  GPT model(tiny());
  std::vector<std::string> expected{"wte.weight", "wpe.weight"};
  for (const std::string h : {"h.0.", "h.1."}) {
    for (const std::string n : {"ln_1.weight", "attn.wq.weight", "attn.wk.weight",
                                "attn.wv.weight", "attn.wo.weight", "ln_2.weight",
                                "mlp.fc.weight", "mlp.proj.weight"}) {
      expected.push_back(h + n);
    }
  }
  expected.insert(expected.end(), {"ln_f.weight", "lm_head.weight"});
  EXPECT_EQ(names(model), expected);

  auto params = model.named_parameters();
  EXPECT_EQ(params["wte.weight"].sizes(), torch::IntArrayRef({64, 32}));
  EXPECT_EQ(params["wpe.weight"].sizes(), torch::IntArrayRef({16, 32}));
  EXPECT_EQ(params["h.0.attn.wq.weight"].sizes(), torch::IntArrayRef({32, 32}));
  EXPECT_EQ(params["h.0.mlp.fc.weight"].sizes(), torch::IntArrayRef({128, 32}));
  EXPECT_EQ(params["h.0.mlp.proj.weight"].sizes(), torch::IntArrayRef({32, 128}));
  EXPECT_EQ(params["lm_head.weight"].sizes(), torch::IntArrayRef({64, 32}));

  // Matrix-optimizer routing: every >= 2-D tensor outside the embeddings and head is in a block.
  for (const auto& item : params) {
    const auto& n = item.key();
    const bool fallback_name = n.find("wte") != std::string::npos ||
                               n.find("wpe") != std::string::npos ||
                               n.find("lm_head") != std::string::npos;
    const bool hidden = n.find(".attn.") != std::string::npos ||
                        n.find(".mlp.") != std::string::npos;
    if (item.value().dim() >= 2) {
      EXPECT_NE(fallback_name, hidden) << n;
    }
  }
  EXPECT_EQ(model.parameter_count(),
            2 * 64 * 32 + 16 * 32 + 2 * (2 * 32 + 4 * 32 * 32 + 2 * 128 * 32) + 32);
  EXPECT_NE(model.parameter_listing().find("h.1.attn.wk.weight [32, 32] 1024"),
            std::string::npos);
}

TEST(ModelsGPT, BiasAndTyingOptions) {
  GPT model(tiny().bias(true).tie_weights(true));
  auto params = model.named_parameters();
  for (const std::string n : {"h.0.ln_1.bias", "h.0.attn.wq.bias", "h.0.attn.wo.bias",
                              "h.0.ln_2.bias", "h.0.mlp.fc.bias", "h.1.mlp.proj.bias",
                              "ln_f.bias"}) {
    EXPECT_TRUE(params.contains(n)) << n;
  }
  EXPECT_FALSE(params.contains("lm_head.weight"));
}

TEST(ModelsGPT, ForwardShapeCausalityAndErrors) {
  torch::manual_seed(0);
  GPT model(tiny());
  auto tokens = torch::randint(64, {3, 10}, torch::kLong);
  auto logits = model.forward(tokens);
  EXPECT_EQ(logits.sizes(), torch::IntArrayRef({3, 10, 64}));
  // Changing the last token leaves the logits of earlier positions unchanged.
  auto changed = tokens.clone();
  changed.index_put_({torch::indexing::Slice(), 9}, (tokens.select(1, 9) + 1) % 64);
  auto logits2 = model.forward(changed);
  EXPECT_TRUE(torch::allclose(logits.slice(1, 0, 9), logits2.slice(1, 0, 9)));
  EXPECT_FALSE(torch::allclose(logits.select(1, 9), logits2.select(1, 9)));

  try {
    model.forward(torch::full({1, 4}, 64, torch::kLong));
    FAIL() << "token id >= vocab must throw";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model vocab 64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model.forward(torch::zeros({1, 17}, torch::kLong)), c10::Error);
  EXPECT_GT(model.flops_per_item(), 2 * model.parameter_count() - 2 * 64 * 32);
}

// The causal mask is a buffer, so Module::to() converts it (and moves it: the same code path
// for a device, which Module::to(meta) cannot show: set_data refuses CPU -> meta); it is
// neither a parameter nor in a saved model (parameters only, as before it was a buffer).
TEST(ModelsGPT, CausalMaskIsABufferOutsideParametersAndCheckpoints) {
  torch::manual_seed(0);
  GPT model(tiny());
  const auto causal = torch::full({16, 16}, -std::numeric_limits<float>::infinity()).triu(1);
  auto buffers = model.named_buffers();
  ASSERT_EQ(buffers.size(), 2u);
  for (const std::string key : {"h.0.attn.causal.mask", "h.1.attn.causal.mask"}) {
    ASSERT_TRUE(buffers.contains(key)) << key;
    EXPECT_TRUE(torch::equal(buffers[key], causal)) << key;
  }

  torch::manual_seed(1);
  GPT loaded(tiny());
  std::stringstream bytes;
  {
    torch::serialize::OutputArchive archive;
    model.save(archive);
    archive.save_to(bytes);
  }
  torch::serialize::InputArchive archive, h, block, attn, mask;
  archive.load_from(bytes);
  archive.read("h", h);
  h.read("0", block);
  block.read("attn", attn);
  EXPECT_TRUE(attn.try_read("wq", mask));
  EXPECT_FALSE(attn.try_read("causal", mask));
  loaded.load(archive);
  const auto tokens = torch::randint(64, {2, 16}, torch::kLong);
  EXPECT_TRUE(torch::equal(loaded.forward(tokens), model.forward(tokens)));

  model.to(torch::kDouble);
  for (const auto& buffer : model.buffers()) {
    EXPECT_TRUE(torch::equal(buffer, causal.to(torch::kDouble)));
  }
}

TEST(ModelsGPT, SupportsDoubleBackward) {
  torch::manual_seed(0);
  GPT model(tiny().layers(1));
  model.to(torch::kDouble);
  auto tokens = torch::randint(64, {2, 8}, torch::kLong);
  auto loss = compute_loss(model.forward(tokens), tokens, Loss::CrossEntropy);
  auto params = model.parameters();
  auto grads = torch::autograd::grad({loss}, params, {}, true, true);
  // Hessian-vector product with v = g: d/dW (g . stop_grad(g)).
  auto dot = torch::zeros({}, torch::kDouble);
  for (const auto& g : grads) dot = dot + (g * g.detach()).sum();
  auto hvp = torch::autograd::grad({dot}, params, {}, false, false, true);
  double norm = 0;
  for (const auto& h : hvp) {
    if (h.defined()) norm += h.pow(2).sum().item<double>();
  }
  EXPECT_TRUE(std::isfinite(norm));
  EXPECT_GT(norm, 0.0);
}

bool python_torch_available() {
  return fs::exists("/usr/bin/python3") &&
         std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") == 0;
}

void write_bytes(const fs::path& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// One forward/backward in float64 here and in tests/python/gpt_reference.py from the same
// weights and tokens: loss and every gradient agree.
void expect_matches_pytorch(const GPTOptions& o) {
  torch::manual_seed(1);
  GPT model(o);
  model.to(torch::kDouble);
  auto tokens = torch::randint(o.vocab(), {3, o.context()}, torch::kLong);
  auto targets = torch::randint(o.vocab(), {3, o.context()}, torch::kLong);
  auto loss = compute_loss(model.forward(tokens), targets, Loss::CrossEntropy);
  loss.backward();

  c10::Dict<std::string, torch::Tensor> in;
  in.insert("config", torch::tensor({o.vocab(), o.d_model(), o.layers(), o.heads(),
                                     o.context(), int64_t{o.bias()}, int64_t{o.tie_weights()}}));
  in.insert("tokens", tokens);
  in.insert("targets", targets);
  for (const auto& item : model.named_parameters()) {
    in.insert("param." + item.key(), item.value().detach());
  }
  const auto dir = fs::temp_directory_path() /
                   ("blockopt_gpt_ref_" + std::to_string(::getpid()) + "_" +
                    std::to_string(o.bias()) + std::to_string(o.tie_weights()));
  fs::create_directories(dir);
  write_bytes(dir / "in.pt", torch::pickle_save(c10::IValue(in)));
  const std::string command = "/usr/bin/python3 " BLOCKOPT_SOURCE_DIR
                              "/tests/python/gpt_reference.py " +
                              (dir / "in.pt").string() + " " + (dir / "out.pt").string();
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  auto out = torch::pickle_load(read_bytes(dir / "out.pt")).toGenericDict();
  fs::remove_all(dir);

  EXPECT_NEAR(out.at("loss").toTensor().item<double>(), loss.item<double>(), 1e-12);
  for (const auto& item : model.named_parameters()) {
    auto reference = out.at("grad." + item.key()).toTensor();
    const auto error = (item.value().grad() - reference).abs().max().item<double>();
    const auto scale = reference.abs().max().item<double>();
    EXPECT_LE(error, 1e-10 * std::max(scale, 1e-3)) << item.key();
  }
}

TEST(ModelsGPT, OneStepMatchesPyTorch) {
  ASSERT_TRUE(python_torch_available())
      << "/usr/bin/python3 cannot import torch: install the Debian package python3-torch";
  expect_matches_pytorch(tiny());
  expect_matches_pytorch(tiny().bias(true).tie_weights(true).layers(1));
}

}  // namespace
}  // namespace blockopt::models
