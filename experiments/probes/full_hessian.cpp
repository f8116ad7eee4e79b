// full_hessian: the exact H (skipped above full_limit parameters) with its block norms, a
// heatmap, its eigenvalues and Marchenko-Pastur fits to the spectra of H and of its first 16
// diagonal blocks; H itself is saved up to save_limit parameters.
#include <blockopt/experiments/detail/probe.h>

#include <fmt/format.h>

namespace blockopt::experiments::detail {

void run_full_hessian(ProbeContext& probe) {
  const auto& spec = probe.spec;
  auto& record = probe.record;
  if (probe.parameter_count > spec.full_limit) {
    record["skipped"] =
        fmt::format("{} parameters > full_limit {}", probe.parameter_count, spec.full_limit);
    return;
  }
  auto h = probe.full_hessian();
  probe.block_outputs(hessian::block_norms(h, probe.partition));
  if (probe.parameter_count <= spec.save_limit) probe.save("_H.npy", h);
  probe.heatmap("_H.png", h, "H_colour_scale", ProbeContext::Index::Parameters, "log10 |H_ij|");
  auto eig = torch::linalg_eigvalsh(h.to(torch::kDouble));  // ascending
  probe.save("_eigenvalues.npy", eig);
  record["spectrum"] = probe.spectrum_fit("_eigenvalues", eig);
  record["trace"] = eig.sum().item<double>();
  record["top_eigenvalues"] = to_json(eig.flip(0).slice(0, 0, spec.top_k));
  const auto& blocks = probe.partition.blocks;
  nlohmann::json block_spectra = nlohmann::json::array();
  for (size_t b = 0; b < blocks.size() && b < 16; ++b) {
    auto block_eig =
        torch::linalg_eigvalsh(hessian::principal_block(h, blocks[b]).to(torch::kDouble));
    auto fit = probe.spectrum_fit(fmt::format("_block{}", b), block_eig);
    fit["block"] = blocks[b].name;
    block_spectra.push_back(fit);
  }
  record["block_spectra"] = block_spectra;
}

}  // namespace blockopt::experiments::detail
