#include <blockopt/models/model.h>

#include <sstream>

namespace blockopt::models {

int64_t Model::parameter_count() const {
  int64_t count = 0;
  for (const auto& p : parameters()) count += p.numel();
  return count;
}

std::string Model::parameter_listing() const {
  std::ostringstream out;
  for (const auto& item : named_parameters()) {
    out << item.key() << ' ' << item.value().sizes() << ' ' << item.value().numel() << '\n';
  }
  out << "total " << parameter_count() << '\n';
  return out.str();
}

}  // namespace blockopt::models
