#pragma once
// Fused single-pass Adam(W)/Adam-mini update over raw CPU pointers: one read of p, g, m, v and
// one write of p, m, v per element, parallel over blocks. Block size 1 is AdamW.
// Same operation order as the tensor-op references (adam_update, adam_mini_update_reference);
// NOTE: LibTorch's vectorised add-with-alpha may use an FMA, so the results agree to rounding,
// not bit for bit (tests use a tight tolerance).
#include <ATen/core/Tensor.h>

namespace blockopt::optim {

// True when the fused loop applies: CPU, float32/float64, contiguous, same dtype.
bool fused_adam_supported(const at::Tensor& param, const at::Tensor& grad);

// True when every element is finite: one vectorised read pass for contiguous CPU
// float32/float64 tensors (no temporaries), torch::isfinite otherwise.
bool all_finite(const at::Tensor& tensor);

// exp_avg: param shape; exp_avg_sq: (numel / block_size,). `step` counts this update.
void fused_adam_update(at::Tensor& param, const at::Tensor& grad, at::Tensor& exp_avg,
                       at::Tensor& exp_avg_sq, int64_t block_size, int64_t step, double lr,
                       double beta1, double beta2, double eps, double weight_decay);

}  // namespace blockopt::optim
