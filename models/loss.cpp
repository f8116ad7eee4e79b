#include <blockopt/models/loss.h>

#include <stdexcept>

namespace blockopt::models {

Loss parse_loss(const std::string& name) {
  if (name == "cross_entropy") return Loss::CrossEntropy;
  if (name == "mse") return Loss::MSE;
  throw std::invalid_argument("unknown loss '" + name + "' (expected cross_entropy or mse)");
}

torch::Tensor compute_loss(const torch::Tensor& logits, const torch::Tensor& targets, Loss loss) {
  const int64_t classes = logits.size(-1);
  auto flat_logits = logits.reshape({-1, classes});  // (N, C)
  auto flat_targets = targets.reshape({-1});          // (N)
  TORCH_CHECK(flat_logits.size(0) == flat_targets.size(0), "loss: ", flat_logits.size(0),
              " logit rows but ", flat_targets.size(0), " targets");
  if (loss == Loss::CrossEntropy) return torch::cross_entropy_loss(flat_logits, flat_targets);
  auto one_hot = torch::one_hot(flat_targets, classes).to(flat_logits.dtype());
  return torch::mse_loss(flat_logits, one_hot);
}

double accuracy(const torch::Tensor& logits, const torch::Tensor& targets) {
  auto predicted = logits.reshape({-1, logits.size(-1)}).argmax(1);
  return predicted.eq(targets.reshape({-1})).to(torch::kDouble).mean().item<double>();
}

}  // namespace blockopt::models
