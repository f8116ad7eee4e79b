#pragma once
// Name-based routing for the matrix optimizers (Muon, NorMuon, ASGO): a tensor with dim >= 2
// whose lower-cased name contains none of the fallback keywords is a matrix parameter;
// everything else (embeddings, output head, gains, biases) goes to the AdamW fallback.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::optim {

using NamedParameters = torch::OrderedDict<std::string, torch::Tensor>;

std::string to_lower(std::string text);
// True when the lower-cased `name` contains one of `keywords` (keywords are lower case).
bool name_contains_any(const std::string& name, const std::vector<std::string>& keywords);

struct RoutingRule {
  std::vector<std::string> fallback_keywords = {"embed", "emb", "wte", "wpe", "lm_head"};
  bool is_matrix(const std::string& name, const torch::Tensor& param) const;
};

struct RoutedParameters {
  std::vector<torch::Tensor> matrix;
  std::vector<torch::Tensor> fallback;
};
RoutedParameters route_parameters(const NamedParameters& named_params, const RoutingRule& rule);

// One line per parameter ("matrix   name (rows, cols)" / "fallback name (...)") for logs.
std::string routing_summary(const NamedParameters& named_params, const RoutingRule& rule);

// A matrix parameter viewed as (rows, cols): (shape[0], numel / shape[0]).
torch::Tensor as_matrix(const torch::Tensor& param);

}  // namespace blockopt::optim
