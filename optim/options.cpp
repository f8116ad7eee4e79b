#include <blockopt/optim/options.h>

namespace blockopt::optim::detail {

std::string name_prefix(const std::string& name, const std::string& suffix) {
  auto prefix = name.substr(0, name.size() - suffix.size());
  for (auto& c : prefix) c = c == '_' ? ' ' : c;
  return prefix;
}

}  // namespace blockopt::optim::detail
