#include <blockopt/data/text.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cstring>
#include <fstream>

namespace blockopt::data {

torch::Tensor byte_tokens(const std::string& text) {
  auto bytes = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  std::memcpy(bytes.data_ptr(), text.data(), text.size());
  return bytes.to(torch::kLong);
}

torch::Tensor load_token_file(const std::string& path, int64_t vocab) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  TORCH_CHECK(in, "token file ", path, " cannot be opened");
  const auto size = static_cast<int64_t>(in.tellg());
  TORCH_CHECK(size > 0 && size % 2 == 0, "token file ", path, " is corrupted: ", size,
              " bytes is not a positive whole number of uint16 tokens");
  in.seekg(0);
  auto raw = torch::empty({size / 2}, torch::kInt16);
  in.read(reinterpret_cast<char*>(raw.data_ptr()), size);
  TORCH_CHECK(in, "token file ", path, ": short read");
  // uint16 stored in int16: reinterpret the sign bit.
  auto tokens = raw.to(torch::kLong).bitwise_and(0xFFFF);
  const auto max_token = tokens.max().item<int64_t>();
  TORCH_CHECK(max_token < vocab, "token file ", path, " holds token id ", max_token,
              " but the vocab is ", vocab,
              ": the tokenizer vocab and the configured vocab disagree (re-run "
              "blockopt-tokenize or fix tokenizer.vocab)");
  return tokens;
}

TextData::TextData(torch::Tensor train, torch::Tensor val, TextDataOptions options)
    : options_(options),
      train_(std::move(train)),
      val_(std::move(val)),
      generator_(at::make_generator<at::CPUGeneratorImpl>(options.seed())) {
  const auto t = options_.context();
  TORCH_CHECK(t > 0 && options_.batch() > 0 && options_.eval_windows() > 0,
              "text data: context, batch and eval_windows must be positive");
  TORCH_CHECK(train_.numel() > t + 1, "text data: training split has ", train_.numel(),
              " tokens, need more than context + 1 = ", t + 1);
  TORCH_CHECK(val_.numel() > t + 1, "text data: validation split has ", val_.numel(),
              " tokens, need more than context + 1 = ", t + 1);
  const auto max_token = std::max(train_.max().item<int64_t>(), val_.max().item<int64_t>());
  TORCH_CHECK(max_token < options_.vocab(), "text data: token id ", max_token,
              " >= vocab ", options_.vocab());
}

Batch TextData::windows(const torch::Tensor& tokens, const torch::Tensor& starts) const {
  // (N, T + 1) positions starts_i + j
  auto idx = starts.unsqueeze(1) + torch::arange(options_.context() + 1, torch::kLong);
  auto w = tokens.index_select(0, idx.flatten()).view(idx.sizes());
  return {w.slice(1, 0, -1).contiguous(), w.slice(1, 1).contiguous()};
}

Batch TextData::next_batch() {
  // starts uniform in [0, n - T - 1], so the shifted targets stay in range.
  auto starts = torch::randint(train_.numel() - options_.context(), {options_.batch()},
                               generator_, torch::TensorOptions().dtype(torch::kLong));
  return windows(train_, starts);
}

std::vector<Batch> TextData::eval_batches() const {
  const auto t = options_.context();
  const auto count = std::min(options_.eval_windows(), (val_.numel() - 1) / t);
  std::vector<Batch> out;
  for (int64_t first = 0; first < count; first += options_.batch()) {
    const auto last = std::min(count, first + options_.batch());
    out.push_back(windows(val_, torch::arange(first, last, torch::kLong) * t));
  }
  return out;
}

void TextData::save(torch::serialize::OutputArchive& archive) const {
  archive.write("text/generator", generator_.get_state());
}

void TextData::load(torch::serialize::InputArchive& archive) {
  torch::Tensor state;
  archive.read("text/generator", state);
  generator_.set_state(state);
}

}  // namespace blockopt::data
