#pragma once
// The seed paper's block-structure theory as tables of measured against predicted values.
// A config names what its runs test with `theory: {kind: ...}`; the report then reads each
// run's config.resolved.yaml and the per-row block ratios its Hessian probe recorded
// (ratio_* in hessian/probes.jsonl) and writes theory.json plus a table and a plot.
//
// r_ij = ||H_ij||_F / ||H_ii||_F for blocks i != j (one block per output row unless stated).
// The theorems are about the ratio of mean squares R = mean_{i != j} ||H_ij||^2 / mean_i
// ||H_ii||^2 (seed paper, eq. 20); the tables give it beside the mean of per-pair ratios r_ij^2,
// each as mean +- 95% CI over seeds (Student t), and fitted slopes with their 95% CI.
//   linear_ce_ratio    linear + CE, N >> d: mean r_ij -> 1/(C-1), sqrt(R) too       x = C
//   theorem1           linear + CE (Theorem 1): C^2 R -> (g e^{2s} + 1) / (g e^s + 1),
//                      g = d/N, s = logit variance (1 LeCun init, 1/3 PyTorch default)
//                                                           x = C (several C), else g
//   class_slopes       1 hidden layer (Theorem 2): R ~ C^slope with slope -1 for hidden
//                      rows, -2 for output rows (CE); output rows exactly 0 (MSE)  x = C
//   vocab_slopes       LLM implication (output_ratio / row_ratio probes, text runs): R of each
//                      matrix (the LM head) ~ vocabulary^slope; -1 or -2?       x = vocab
//   training_dynamics  dynamic force: cross-layer blocks H_wv ~ optimality gap shrink as
//                      training proceeds                                             x = step
#include <blockopt/experiments/run_dir.h>

#include <string>
#include <vector>

namespace blockopt::experiments {

// The kinds above, for config validation.
const std::vector<std::string>& theory_kinds();

// Theory of the finished runs in `run_dirs` (all with the same kind), or null when their
// configs name none. Shape: {kind, claim, columns, rows, checks: [{quantity, measured, ci95,
// predicted}] (ci95: the 95% CI half-width, null where there is none), plot: {title, xlabel, ylabel, log_x, log_y, series: [{name, x, y, line}]}}.
// Runs without a completed probe record are listed in "missing", never silently dropped.
nlohmann::json evaluate_theory(const std::vector<fs::path>& run_dirs);

}  // namespace blockopt::experiments
