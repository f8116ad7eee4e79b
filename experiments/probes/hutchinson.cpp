// hutchinson: estimated block norms (as block_norms above full_limit) and the trace of H by
// Hutchinson (with its standard error) and by Hutch++ (3 x samples products).
#include <blockopt/experiments/detail/probe.h>
#include <blockopt/hessian/estimators.h>

namespace blockopt::experiments::detail {

void run_hutchinson(ProbeContext& probe) {
  namespace bh = blockopt::hessian;
  probe.estimated_block_norms();
  const auto samples = probe.spec.samples;
  auto trace = bh::trace_hutchinson(bh::as_matvec(probe.op), probe.parameter_count, samples,
                                    probe.generator, probe.target.options);
  probe.record["trace"] = trace.value;
  probe.record["trace_stderr"] = trace.stderr_value;
  probe.record["trace_hutchpp"] = bh::trace_hutchpp(bh::as_matvec(probe.op), probe.parameter_count,
                                                    3 * samples, probe.generator,
                                                    probe.target.options);
}

}  // namespace blockopt::experiments::detail
