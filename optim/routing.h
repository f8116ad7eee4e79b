#pragma once
// Name-based routing for the matrix optimizers (Muon, NorMuon, ASGO): a tensor with dim >= 2
// whose name contains none of the fallback keywords (keywords.h) is a matrix parameter;
// everything else (embeddings, output head, gains, biases) goes to the AdamW fallback.
#include <blockopt/optim/keywords.h>
#include <blockopt/optim/partition.h>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace blockopt::optim {

struct RoutingRule {
  std::vector<std::string> fallback_keywords = keywords::embedding_or_head;
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
