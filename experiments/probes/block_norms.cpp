// block_norms: the (B, B) matrix of ||H_ij||_F and the off-diagonal ratios r_ij, exact from the
// full H up to full_limit parameters, estimated by Hutchinson above.
#include <blockopt/experiments/detail/probe.h>

namespace blockopt::experiments::detail {

void run_block_norms(ProbeContext& probe) {
  if (probe.parameter_count <= probe.spec.full_limit) {
    probe.block_outputs(hessian::block_norms(probe.full_hessian(), probe.partition));
  } else {
    probe.estimated_block_norms();
  }
}

}  // namespace blockopt::experiments::detail
