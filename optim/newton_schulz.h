#pragma once
// Quintic Newton-Schulz orthogonalisation (Muon): approximately U V^T for G = U S V^T.
#include <blockopt/optim/options.h>

#include <torch/torch.h>

#include <optional>

namespace blockopt::optim {

// X / (||X|| + 1e-7) or X / max(||X||, 1e-7).
enum class NsEpsMode { add, clamp };
template <>
struct EnumNames<NsEpsMode> {
  static constexpr std::array<std::pair<NsEpsMode, const char*>, 2> values{
      {{NsEpsMode::add, "add"}, {NsEpsMode::clamp, "clamp"}}};
};

// The Newton-Schulz compute dtype: the parameter's ("") or bfloat16.
enum class NsDtype { parameter, bfloat16 };
template <>
struct EnumNames<NsDtype> {
  static constexpr std::array<std::pair<NsDtype, const char*>, 2> values{
      {{NsDtype::parameter, ""}, {NsDtype::bfloat16, "bfloat16"}}};
};

// The quintic's coefficients (a, b, c): Keller Jordan's (3.4445, -4.7750, 2.0315), fast but
// not convergent, or the "simple quintic" (2, -1.5, 0.5) that Aurora's polar factor uses.
enum class NsCoefficients { jordan, simple };
template <>
struct EnumNames<NsCoefficients> {
  static constexpr std::array<std::pair<NsCoefficients, const char*>, 2> values{
      {{NsCoefficients::jordan, "jordan"}, {NsCoefficients::simple, "simple"}}};
};

// G: (rows, cols). Transposes when rows > cols, normalises X = G / (||G||_F + 1e-7)
// (NsEpsMode::add) or G / max(||G||_F, 1e-7) (clamp), then `steps` times
//   A = X X^T ;  X = a X + (b A + c A A) X     with (a, b, c) from `coefficients`.
// Computed in `dtype` (default: G's dtype); the result has that dtype.
torch::Tensor newton_schulz(const torch::Tensor& matrix, int64_t steps, NsEpsMode eps_mode,
                            std::optional<torch::ScalarType> dtype = std::nullopt,
                            NsCoefficients coefficients = NsCoefficients::jordan);

// The NS compute dtype: none (the parameter's) or kBFloat16.
std::optional<torch::ScalarType> ns_compute_dtype(NsDtype dtype);

}  // namespace blockopt::optim
