#pragma once
#include <torch/torch.h>

#include <string>

namespace blockopt::models {

enum class Loss { CrossEntropy, MSE };
Loss parse_loss(const std::string& name);

// logits (..., C), targets (...) class indices.
//   cross_entropy: mean over samples of -log softmax(logits)[target]
//   mse: mean over all N*C entries of (logits - one_hot(target))^2 (torch mse_loss)
torch::Tensor compute_loss(const torch::Tensor& logits, const torch::Tensor& targets, Loss loss);

// Fraction of samples whose argmax logit is the target.
double accuracy(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace blockopt::models
