// lanczos: top_k Ritz values of H after lanczos_steps iterations from a Rademacher start, with
// all Ritz values and weights saved.
#include <blockopt/experiments/detail/probe.h>
#include <blockopt/hessian/estimators.h>

namespace blockopt::experiments::detail {

void run_lanczos(ProbeContext& probe) {
  namespace bh = blockopt::hessian;
  auto start = bh::rademacher(probe.parameter_count, probe.generator, probe.target.options);
  auto r = bh::lanczos(bh::as_matvec(probe.op), start, probe.spec.lanczos_steps);
  probe.record["top_eigenvalues"] = to_json(r.ritz_values.flip(0).slice(0, 0, probe.spec.top_k));
  probe.save("_ritz_values.npy", r.ritz_values);
  probe.save("_ritz_weights.npy", r.ritz_weights);
}

}  // namespace blockopt::experiments::detail
