// slq: stochastic Lanczos quadrature densities of H and of each diagonal block H_bb, the
// Jensen-Shannon distances between the block densities, and the smoothed densities on a
// common grid for the report.
#include <blockopt/experiments/detail/probe.h>
#include <blockopt/hessian/estimators.h>

#include <algorithm>
#include <vector>

namespace blockopt::experiments::detail {

void run_slq(ProbeContext& probe) {
  namespace bh = blockopt::hessian;
  const auto& spec = probe.spec;
  const auto& options = probe.target.options;
  auto& record = probe.record;
  auto full = bh::slq_density(bh::as_matvec(probe.op), probe.parameter_count, spec.lanczos_steps,
                              spec.samples, probe.generator, options);
  probe.save("_nodes.npy", full.nodes);
  probe.save("_weights.npy", full.weights);
  std::vector<bh::SpectralDensity> blocks;
  for (const auto& block : probe.partition.blocks) {
    auto block_op = bh::restrict_to(bh::as_matvec(probe.op), block, probe.parameter_count, options);
    blocks.push_back(bh::slq_density(block_op, block.end - block.begin, spec.lanczos_steps,
                                     spec.samples, probe.generator, options));
  }
  // Smoothing width: 1% of the joint spectral range.
  double lo = full.nodes.min().item<double>(), hi = full.nodes.max().item<double>();
  for (const auto& d : blocks) {
    lo = std::min(lo, d.nodes.min().item<double>());
    hi = std::max(hi, d.nodes.max().item<double>());
  }
  const double sigma = std::max(0.01 * (hi - lo), 1e-12);
  const auto nb = static_cast<int64_t>(blocks.size());
  auto js = torch::zeros({nb, nb}, torch::kDouble);  // (B, B) symmetric, zero diagonal
  for (int64_t i = 0; i < nb; ++i) {
    for (int64_t j = i + 1; j < nb; ++j) {
      const double d = bh::js_distance(blocks[i], blocks[j], sigma);
      js[i][j] = d;
      js[j][i] = d;
    }
  }
  probe.save("_js.npy", js);
  record["smoothing_sigma"] = sigma;
  // Smoothed densities on a common grid, for the report's spectrum plots.
  auto grid = torch::linspace(lo - 4 * sigma, hi + 4 * sigma, 200, torch::kDouble);
  nlohmann::json block_densities = nlohmann::json::object();
  for (int64_t b = 0; b < nb && b < 8; ++b) {
    block_densities[probe.partition.blocks[b].name] = to_json(blocks[b].smooth(grid, sigma));
  }
  record["density"] = {{"grid", to_json(grid)}, {"full", to_json(full.smooth(grid, sigma))},
                       {"blocks", block_densities}};
  if (nb > 1) {
    record["js_mean"] = (js.sum() / (nb * (nb - 1))).item<double>();
    record["js_max"] = js.max().item<double>();
  }
}

}  // namespace blockopt::experiments::detail
