#pragma once
// numpy .npy arrays, for the probe's outputs.
#include <torch/torch.h>

#include <filesystem>

namespace blockopt::experiments::detail {

// numpy .npy (format 1.0, little-endian, C order) of a float32/float64/int64 tensor; any other
// dtype is written as float64.
void write_npy(const std::filesystem::path& path, const torch::Tensor& tensor);

}  // namespace blockopt::experiments::detail
