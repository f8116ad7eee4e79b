// output_ratio: the seed paper's ratio of mean squares R = mean_{i != j} ||H_ij||_F^2 /
// mean_i ||H_ii||_F^2 over the rows (classes) of a GPT's untied lm_head, whose block of H
// depends on the head's input and the softmax alone: exact by Gram contractions over the
// evaluation positions (hessian::last_layer_row_block_sums, O(N^2 (d_model + vocab))), where
// block norms or Hutchinson estimates of a vocabulary-sized B would not do. The probe of the
// LLM implication (theory kind vocab_slopes); the whole evaluation set on every rank.
#include <blockopt/experiments/detail/probe.h>
#include <blockopt/hessian/mlp_block_norms.h>
#include <blockopt/models/gpt.h>

namespace blockopt::experiments::detail {

void run_output_ratio(ProbeContext& probe) {
  auto* gpt = dynamic_cast<models::GPT*>(probe.target.model);
  if (gpt == nullptr || gpt->options().tie_weights()) {
    throw std::invalid_argument(
        "output_ratio probe: needs a GPT with an untied lm_head (model.tie_weights: false; a tied "
        "head's block of H also holds the token embedding's terms)");
  }
  torch::NoGradGuard no_grad;
  const auto parameters = gpt->named_parameters();
  const auto weight = parameters["lm_head.weight"].detach().to(torch::kDouble);  // (V, d_model)
  const auto features = gpt->head_input(probe.target.all_x).to(torch::kDouble);  // (B, T, d_model)
  const auto logits = torch::matmul(features, weight.t());                        // (B, T, V)
  const auto sums = hessian::last_layer_row_block_sums(features, logits, probe.target.all_y,
                                                       probe.target.loss_kind);
  probe.record["ratio_of_mean_squares"] = {
      {"lm_head.weight",
       {{"blocks", sums.blocks}, {"ratio", sums.ratio()}, {"total", sums.total}, {"diagonal", sums.diagonal}}}};
  probe.record["R lm_head.weight"] = sums.ratio();
  probe.record["method"] = "exact_gram";
}

}  // namespace blockopt::experiments::detail
