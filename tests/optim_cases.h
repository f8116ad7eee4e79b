#pragma once
// The optimizer cases the optimizer suites share: a tiny GPT-like parameter set, seeded
// gradients, and one factory per blockopt optimizer with its state size per the spec.
#include <blockopt/blockopt.h>

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace blockopt::test {

namespace bo = blockopt::optim;
using OptimizerPtr = std::unique_ptr<torch::optim::Optimizer>;

// A tiny GPT-like parameter set (float64): two fallback tensors (embedding, bias), three
// matrices; Adam-mini head_dim 4.
inline bo::NamedParameters make_params(torch::Dtype dtype = torch::kFloat64) {
  torch::manual_seed(0);
  bo::NamedParameters named;
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"wte.weight", {12, 8}},          {"h.0.attn.wq.weight", {8, 8}},
      {"h.0.mlp.fc.weight", {16, 8}},   {"h.0.mlp.fc.bias", {16}},
      {"h.0.mlp.proj.weight", {8, 16}}};
  for (const auto& [name, shape] : shapes) {
    named.insert(name, torch::randn(shape, dtype).set_requires_grad(true));
  }
  return named;
}

inline void set_grads(bo::NamedParameters& named, int64_t step) {
  torch::manual_seed(1000 + step);
  for (auto& item : named) item.value().mutable_grad() = torch::randn_like(item.value());
}

inline bo::NamedParameters clone_params(const bo::NamedParameters& named) {
  bo::NamedParameters copy;
  for (const auto& item : named) {
    copy.insert(item.key(), item.value().detach().clone().set_requires_grad(true));
  }
  return copy;
}

struct OptimizerCase {
  std::string name;
  std::function<OptimizerPtr(const bo::NamedParameters&, double lr)> make;
  // State elements per parameter after one step (spec memory table).
  std::function<int64_t(const std::string&, const torch::Tensor&)> state_elements;
};

inline int64_t matrix_or(const std::string& name, const torch::Tensor& p, int64_t matrix_elements) {
  return bo::RoutingRule{}.is_matrix(name, p) ? matrix_elements : 2 * p.numel();
}

inline std::vector<OptimizerCase> optimizer_cases() {
  return {
      {"adamw",
       [](const bo::NamedParameters& n, double lr) -> OptimizerPtr {
         std::vector<torch::Tensor> params;
         for (const auto& item : n) params.push_back(item.value());
         return std::make_unique<bo::AdamW>(params, bo::AdamWOptions(lr));
       },
       [](const std::string&, const torch::Tensor& p) { return 2 * p.numel(); }},
      {"adam_mini",
       [](const bo::NamedParameters& n, double lr) -> OptimizerPtr {
         return std::make_unique<bo::AdamMini>(n, bo::AdamMiniOptions(lr).head_dim(4).weight_decay(0.1));
       },
       [](const std::string& name, const torch::Tensor& p) -> int64_t {
         if (p.dim() < 2) return p.numel() + 1;
         if (name.find("wq") != std::string::npos) return p.numel() + p.size(0) / 4;
         return p.numel() + p.size(0);
       }},
      {"muon",
       [](const bo::NamedParameters& n, double lr) -> OptimizerPtr {
         return std::make_unique<bo::Muon>(n, bo::MuonOptions(lr).weight_decay(0.01));
       },
       [](const std::string& name, const torch::Tensor& p) { return matrix_or(name, p, p.numel()); }},
      {"normuon",
       [](const bo::NamedParameters& n, double lr) -> OptimizerPtr {
         return std::make_unique<bo::NorMuon>(n, bo::NorMuonOptions(lr).weight_decay(0.01));
       },
       [](const std::string& name, const torch::Tensor& p) {
         return matrix_or(name, p, p.numel() + p.size(0));
       }},
      {"aurora",
       [](const bo::NamedParameters& n, double lr) -> OptimizerPtr {
         return std::make_unique<bo::Aurora>(n, bo::AuroraOptions(lr).weight_decay(0.01));
       },
       [](const std::string& name, const torch::Tensor& p) { return matrix_or(name, p, p.numel()); }},
      {"asgo",
       [](const bo::NamedParameters& n, double lr) -> OptimizerPtr {
         return std::make_unique<bo::ASGO>(n, bo::ASGOOptions(lr));
       },
       [](const std::string& name, const torch::Tensor& p) {
         const auto k = std::min(p.size(0), p.numel() / p.size(0));
         return matrix_or(name, p, p.numel() + k * k);
       }},
  };
}

// Names the optimizer in ctest's test list instead of the struct's bytes.
inline void PrintTo(const OptimizerCase& param, std::ostream* out) { *out << param.name; }

}  // namespace blockopt::test
