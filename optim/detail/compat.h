#pragma once
// The one place that knows which LibTorch blockopt is built against (TORCH_VERSION_MAJOR):
// the key of Optimizer::state(), the save/load of an optimizer's state and group options, and
// the signature of a c10::Allocator.
// Supported: LibTorch 1.13 (Debian bookworm) and 2.x (trixie's 2.6).
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace blockopt::optim {

// The key of a parameter's entry in Optimizer::state(): the address of its TensorImpl,
// printed to a string in LibTorch 1.x and the pointer itself in 2.x.
#if TORCH_VERSION_MAJOR >= 2
using StateKey = void*;
inline StateKey state_key(const torch::Tensor& param) { return param.unsafeGetTensorImpl(); }
#else
using StateKey = std::string;
inline StateKey state_key(const torch::Tensor& param) {
  return c10::guts::to_string(param.unsafeGetTensorImpl());
}
#endif

// The save() of every blockopt optimizer, exactly what torch::optim::serialize writes: each
// parameter's state under its key, and every group's parameter keys and options.
template <typename ParamState, typename Options>
void save_state_and_options(torch::serialize::OutputArchive& archive,
                            const torch::optim::Optimizer& optimizer) {
  torch::optim::serialize<ParamState, Options>(archive, optimizer);
}

namespace detail {

#if TORCH_VERSION_MAJOR >= 2
// Throws unless every key of the saved state is a 2.x key (a decimal address). NOTE: 2.x
// parses keys with std::stoull, which reads the printed pointers of a 1.x checkpoint
// ("0x55d0...") as 0, so every saved state would land under one key.
inline void check_state_keys(torch::serialize::InputArchive& archive) {
  torch::serialize::InputArchive state_archive;
  archive.read("state", state_archive);
  for (const auto& key : state_archive.keys()) {
    const bool decimal = !key.empty() && std::all_of(key.begin(), key.end(), [](unsigned char c) {
      return std::isdigit(c) != 0;
    });
    TORCH_CHECK(decimal, "optimizer load: the checkpoint keys a state by '", key,
                "', not by a decimal address: it was written by another LibTorch version");
  }
}

// Reads what save_state_and_options wrote into `optimizer`: the saved states go to the
// parameters in the same group positions, and every group takes its saved options
// (torch::optim::serialize assigns them since 2.0). load_state_and_options (detail/step.h)
// wraps it with validation and rollback.
template <typename ParamState, typename Options>
void read_state_and_options(torch::serialize::InputArchive& archive,
                            torch::optim::Optimizer& optimizer) {
  check_state_keys(archive);
  torch::optim::serialize<ParamState, Options>(archive, optimizer);
}
#else
// As above; NOTE: 1.x's torch::optim::serialize reads the saved group options but never
// assigns them, so they are read again here and installed.
template <typename ParamState, typename Options>
void read_state_and_options(torch::serialize::InputArchive& archive,
                            torch::optim::Optimizer& optimizer) {
  torch::optim::serialize<ParamState, Options>(archive, optimizer);
  torch::serialize::InputArchive groups_archive;
  archive.read("param_groups", groups_archive);
  std::vector<std::pair<std::vector<std::string>, std::unique_ptr<torch::optim::OptimizerOptions>>>
      saved_groups;
  torch::optim::detail::serialize<Options>(groups_archive, saved_groups);
  auto& groups = optimizer.param_groups();
  TORCH_CHECK(saved_groups.size() == groups.size(), "optimizer load: checkpoint has ",
              saved_groups.size(), " param groups, optimizer has ", groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    groups[i].set_options(std::move(saved_groups[i].second));
  }
}
#endif

// A c10::Allocator written once for both versions: allocate() is const in 1.x; 2.x drops the
// const and adds copy_data(). A derived allocator implements allocate_bytes().
class AllocatorBase : public c10::Allocator {
 public:
#if TORCH_VERSION_MAJOR >= 2
  c10::DataPtr allocate(size_t nbytes) final { return allocate_bytes(nbytes); }
  void copy_data(void* dest, const void* src, std::size_t count) const final {
    std::memcpy(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t nbytes) const final { return allocate_bytes(nbytes); }
#endif

 protected:
  virtual c10::DataPtr allocate_bytes(size_t nbytes) const = 0;
};

}  // namespace detail
}  // namespace blockopt::optim
