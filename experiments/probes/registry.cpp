// The probe types: a new type is a function in probes/<type>.cpp and one line here.
#include <blockopt/experiments/detail/probe.h>

#include <algorithm>

namespace blockopt::experiments::detail {

void run_block_norms(ProbeContext& probe);
void run_full_hessian(ProbeContext& probe);
void run_lanczos(ProbeContext& probe);
void run_hutchinson(ProbeContext& probe);
void run_slq(ProbeContext& probe);
void run_row_heterogeneity(ProbeContext& probe);
void run_output_ratio(ProbeContext& probe);
void run_row_ratio(ProbeContext& probe);

const std::vector<ProbeType>& probe_types() {
  static const std::vector<ProbeType> types = {{"block_norms", run_block_norms},
                                               {"full_hessian", run_full_hessian},
                                               {"lanczos", run_lanczos},
                                               {"hutchinson", run_hutchinson},
                                               {"slq", run_slq},
                                               {"row_heterogeneity", run_row_heterogeneity},
                                               {"output_ratio", run_output_ratio},
                                               {"row_ratio", run_row_ratio}};
  return types;
}

const ProbeType* find_probe_type(const std::string& name) {
  const auto& types = probe_types();
  auto it = std::find_if(types.begin(), types.end(),
                         [&](const ProbeType& type) { return type.name == name; });
  return it == types.end() ? nullptr : &*it;
}

}  // namespace blockopt::experiments::detail
