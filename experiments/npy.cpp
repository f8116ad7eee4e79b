#include <blockopt/experiments/detail/npy.h>
#include <blockopt/experiments/run_dir.h>

#include <string>

namespace blockopt::experiments::detail {

void write_npy(const std::filesystem::path& path, const torch::Tensor& tensor) {
  auto t = tensor.detach().contiguous();
  std::string descr;
  switch (t.scalar_type()) {
    case torch::kFloat64: descr = "<f8"; break;
    case torch::kFloat32: descr = "<f4"; break;
    case torch::kInt64: descr = "<i8"; break;
    default: t = t.to(torch::kFloat64); descr = "<f8";
  }
  std::string shape;  // "a, b"; a 1-d shape is "a,"
  for (int64_t d = 0; d < t.dim(); ++d) shape += (d > 0 ? ", " : "") + std::to_string(t.size(d));
  if (t.dim() == 1) shape += ",";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  write_file_atomic(path, out);
}

}  // namespace blockopt::experiments::detail
