#include <blockopt/experiments/detail/probe.h>
#include <blockopt/experiments/probes.h>

#include <algorithm>

namespace blockopt::experiments {

bool ProbeSpec::due(int64_t step) const {
  if (every > 0) return step % every == 0;
  return std::find(steps.begin(), steps.end(), step) != steps.end();
}

namespace {

// "expected a, b or c" over the probe types' names.
std::string expected_types() {
  const auto& types = detail::probe_types();
  std::string text = "expected ";
  for (size_t i = 0; i < types.size(); ++i) {
    if (i > 0) text += i + 1 < types.size() ? ", " : " or ";
    text += types[i].name;
  }
  return text;
}

}  // namespace

std::vector<ProbeSpec> read_probe_specs(std::vector<ConfigNode> nodes) {
  std::vector<ProbeSpec> specs;
  for (auto& node : nodes) {
    ProbeSpec s;
    s.type = node.get<std::string>("type");
    node.check(detail::find_probe_type(s.type) != nullptr, "type", expected_types());
    s.every = node.get<int64_t>("every", s.every);
    node.check(s.every >= 0, "every", "must be >= 0");
    try {
      s.steps = node.get<std::vector<int64_t>>("steps", s.steps);
    } catch (const ConfigError& e) {
      // spec/architecture.md's example wrote `steps: 50` for the Lanczos iterations.
      throw ConfigError(std::string(e.what()) +
                        " (steps lists the training steps to probe at, e.g. [0, 100]; the Lanczos "
                        "iteration count is lanczos_steps)");
    }
    node.check(s.every > 0 || !s.steps.empty(), "every", "give `every: k` or `steps: [..]`");
    s.partition = node.get<std::string>("partition", s.partition);
    s.head_dim = node.get<int64_t>("head_dim", s.head_dim);
    node.check(s.partition != "per_head" || s.head_dim > 0, "head_dim",
               "per_head partitions need head_dim > 0");
    node.check(s.partition == "per_tensor" || s.partition == "per_row" || s.partition == "per_head",
               "partition", "expected per_tensor, per_row or per_head");
    s.samples = node.get<int64_t>("samples", s.samples);
    node.check(s.samples >= 2, "samples", "must be >= 2");
    s.tensors = node.get<std::vector<std::string>>("tensors", s.tensors);
    s.rows = node.get<int64_t>("rows", s.rows);
    node.check(s.rows >= 2, "rows", "must be >= 2 (a spread needs two rows)");
    s.top_k = node.get<int64_t>("top_k", s.top_k);
    node.check(s.top_k >= 1, "top_k", "must be >= 1");
    s.lanczos_steps = node.get<int64_t>("lanczos_steps", s.lanczos_steps);
    node.check(s.lanczos_steps >= 2, "lanczos_steps", "must be >= 2");
    s.dtype = node.get<std::string>("dtype", s.dtype);
    node.check(s.dtype == "float64" || s.dtype == "float32", "dtype", "expected float64 or float32");
    s.full_limit = node.get<int64_t>("full_limit", s.full_limit);
    s.save_limit = node.get<int64_t>("save_limit", s.save_limit);
    s.method = node.get<std::string>("method", s.method);
    node.check(s.method == "auto" || s.method == "full" || s.method == "matrix_free", "method",
               "expected auto, full or matrix_free");
    specs.push_back(std::move(s));
  }
  return specs;
}

}  // namespace blockopt::experiments
