#include <blockopt/data/data.h>

#include <ATen/CPUGeneratorImpl.h>

namespace blockopt::data {

EpochSampler::EpochSampler(int64_t n, int64_t batch, uint64_t seed)
    : n_(n), batch_(batch), generator_(at::make_generator<at::CPUGeneratorImpl>(seed)) {
  TORCH_CHECK(n > 0 && batch > 0 && batch <= n, "sampler: need 0 < batch (", batch,
              ") <= samples (", n, ")");
}

torch::Tensor EpochSampler::next_indices() {
  if (batch_ == n_) return torch::arange(n_, torch::kLong);  // full batch: no shuffling
  if (!order_.defined() || cursor_ + batch_ > n_) {
    order_ = torch::randperm(n_, generator_, torch::kLong);
    cursor_ = 0;
  }
  auto indices = order_.slice(0, cursor_, cursor_ + batch_);
  cursor_ += batch_;
  return indices;
}

void EpochSampler::save(torch::serialize::OutputArchive& archive) const {
  archive.write("sampler/generator", generator_.get_state());
  archive.write("sampler/cursor", torch::tensor(cursor_));
  if (order_.defined()) archive.write("sampler/order", order_);
}

void EpochSampler::load(torch::serialize::InputArchive& archive) {
  torch::Tensor state, cursor;
  archive.read("sampler/generator", state);
  archive.read("sampler/cursor", cursor);
  generator_.set_state(state);
  cursor_ = cursor.item<int64_t>();
  torch::Tensor order;  // undefined before the first batch
  order_ = archive.try_read("sampler/order", order) ? order : torch::Tensor();
}

}  // namespace blockopt::data
