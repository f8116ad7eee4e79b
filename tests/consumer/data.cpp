// Links blockopt::data alone: Gaussian data yields full batches of the requested shape.
#include <blockopt/data/gaussian.h>

#include <iostream>

int main() {
  blockopt::data::GaussianData data(
      blockopt::data::GaussianDataOptions().samples(32).dim(5).classes(3).batch(8));
  const auto batch = data.next_batch();
  std::cout << "data: inputs " << batch.inputs.sizes() << ", targets " << batch.targets.sizes()
            << std::endl;
  const bool labels_in_range = batch.targets.min().item<int64_t>() >= 0 &&
                               batch.targets.max().item<int64_t>() < 3;
  return batch.inputs.sizes() == torch::IntArrayRef({8, 5}) && labels_in_range ? 0 : 1;
}
