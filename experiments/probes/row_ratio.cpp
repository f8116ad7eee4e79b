// row_ratio: the seed paper's ratio of mean squares R = mean_{i != j} ||H_ij||_F^2 /
// mean_i ||H_ii||_F^2 over the rows of each matrix whose name contains one of `tensors` (every
// matrix when empty), estimated from `rows` rows drawn among those the evaluation data reach
// (a non-zero gradient; an unused token's embedding row has zero blocks) with `samples`
// Rademacher draws each (hessian::sampled_row_ratio: rows x samples products per matrix), so a
// vocabulary-sized matrix such as a token embedding costs what its sample costs. The record
// holds, per matrix, R with its standard error over the sampled rows, and "R <name>" for the
// report's plots over training.
#include <blockopt/experiments/detail/probe.h>
#include <blockopt/hessian/estimators.h>

#include <algorithm>

namespace blockopt::experiments::detail {

void run_row_ratio(ProbeContext& probe) {
  namespace bh = blockopt::hessian;
  const auto& spec = probe.spec;
  const auto matvec = bh::as_matvec(probe.op);
  const auto gradient = probe.op.gradient();  // (P)
  nlohmann::json tensors = nlohmann::json::object();
  int64_t begin = 0;
  for (const auto& info : probe.target.infos) {
    const int64_t numel = info.numel(), tensor_begin = begin;
    begin += numel;
    const bool named = spec.tensors.empty() ||
                       std::any_of(spec.tensors.begin(), spec.tensors.end(),
                                   [&](const std::string& part) { return info.name.find(part) != std::string::npos; });
    if (!named || info.shape.size() < 2 || info.shape[0] < 2 || numel == 0) continue;
    const int64_t rows = info.shape[0], width = numel / rows;
    const auto reached = rows_reached(gradient, tensor_begin, rows, width);
    if (reached.size(0) < 2) continue;
    const auto e = bh::sampled_row_ratio(matvec, probe.parameter_count, tensor_begin, rows, width, reached,
                                         spec.rows, spec.samples, probe.generator, probe.target.options);
    tensors[info.name] = {{"blocks", reached.size(0)}, {"rows_sampled", e.sampled},
                          {"ratio", e.ratio}, {"ratio_stderr", e.ratio_stderr}};
    probe.record["R " + info.name] = e.ratio;
  }
  if (tensors.empty()) {
    throw std::invalid_argument("row_ratio probe: no matrix named in `tensors` has 2 or more rows that "
                                "the evaluation data reach");
  }
  probe.record["ratio_of_mean_squares"] = tensors;
}

}  // namespace blockopt::experiments::detail
