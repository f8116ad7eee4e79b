#include <blockopt/data/fashion_mnist.h>

#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <memory>

namespace blockopt::data {

namespace {

constexpr int64_t kEvalBatch = 1000;
// Training-set pixel mean and standard deviation (of x / 255).
constexpr double kMean = 0.2860;
constexpr double kStd = 0.3530;

std::string read_gzip(const std::string& path) {
  TORCH_CHECK(std::filesystem::exists(path), "Fashion-MNIST file ", path,
              " not found; install the data with `apt-get install dataset-fashion-mnist` "
              "(or run scripts/setup), or set data.dir");
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  TORCH_CHECK(file, "cannot open ", path);
  std::string out;
  char buffer[1 << 16];
  int n;
  while ((n = gzread(file.get(), buffer, sizeof(buffer))) > 0) out.append(buffer, n);
  TORCH_CHECK(n == 0, path, " is corrupted (gzip error)");
  return out;
}

uint32_t big_endian(const std::string& bytes, size_t offset) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(bytes[offset + i]);
  return v;
}

torch::Tensor standardise(const torch::Tensor& images) {  // (N, 28, 28) uint8 -> (N, 1, 28, 28)
  return ((images.to(torch::kFloat32) / 255.0 - kMean) / kStd).unsqueeze(1);
}

}  // namespace

torch::Tensor read_idx_gz(const std::string& path, int64_t expected_dims) {
  const auto bytes = read_gzip(path);
  TORCH_CHECK(bytes.size() >= 4, path, " is corrupted: too short for an IDX header");
  const auto magic = big_endian(bytes, 0);
  TORCH_CHECK(magic == static_cast<uint32_t>(0x800 + expected_dims), path,
              " is corrupted: bad IDX magic 0x", std::hex, magic, " (expected 0x",
              0x800 + expected_dims, ")");
  const size_t header = 4 + 4 * static_cast<size_t>(expected_dims);
  TORCH_CHECK(bytes.size() >= header, path, " is corrupted: truncated IDX header");
  std::vector<int64_t> shape;
  int64_t numel = 1;
  for (int64_t d = 0; d < expected_dims; ++d) {
    shape.push_back(big_endian(bytes, 4 + 4 * static_cast<size_t>(d)));
    numel *= shape.back();
  }
  TORCH_CHECK(static_cast<int64_t>(bytes.size() - header) == numel, path,
              " is corrupted: header announces ", numel, " bytes of data, file has ",
              bytes.size() - header);
  auto out = torch::empty(shape, torch::kUInt8);
  std::memcpy(out.data_ptr(), bytes.data() + header, static_cast<size_t>(numel));
  return out;
}

FashionMNIST::FashionMNIST(FashionMNISTOptions options)
    : batch_(options.batch()),
      sampler_(options.train_samples() > 0 ? options.train_samples() : 60000, options.batch(),
               options.seed()) {
  const auto& dir = options.dir();
  train_x_ = standardise(read_idx_gz(dir + "/train-images-idx3-ubyte.gz", 3));
  train_y_ = read_idx_gz(dir + "/train-labels-idx1-ubyte.gz", 1).to(torch::kLong);
  test_x_ = standardise(read_idx_gz(dir + "/t10k-images-idx3-ubyte.gz", 3));
  test_y_ = read_idx_gz(dir + "/t10k-labels-idx1-ubyte.gz", 1).to(torch::kLong);
  TORCH_CHECK(train_x_.size(0) == 60000 && train_y_.size(0) == 60000 &&
                  test_x_.size(0) == 10000 && test_y_.size(0) == 10000 &&
                  train_x_.size(2) == 28 && train_x_.size(3) == 28,
              "Fashion-MNIST in ", dir, " has unexpected sizes");
  TORCH_CHECK(options.train_samples() >= 0 && options.train_samples() <= 60000,
              "train_samples must be in [0, 60000]");
  if (options.train_samples() > 0) {
    train_x_ = train_x_.slice(0, 0, options.train_samples());
    train_y_ = train_y_.slice(0, 0, options.train_samples());
  }
  TORCH_CHECK(options.batch() <= train_x_.size(0), "batch ", options.batch(), " exceeds the ",
              train_x_.size(0), " training images");
  TORCH_CHECK(options.eval_split() == "test" || options.eval_split() == "train",
              "eval_split must be test or train, not '", options.eval_split(), "'");
  if (options.eval_split() == "train") {
    test_x_ = train_x_;
    test_y_ = train_y_;
  }
  if (options.eval_samples() > 0) {
    TORCH_CHECK(options.eval_samples() <= test_x_.size(0), "eval_samples must be <= ",
                test_x_.size(0));
    test_x_ = test_x_.slice(0, 0, options.eval_samples());
    test_y_ = test_y_.slice(0, 0, options.eval_samples());
  }
}

Batch FashionMNIST::next_batch() {
  auto indices = sampler_.next_indices();
  return {train_x_.index_select(0, indices), train_y_.index_select(0, indices)};
}

std::vector<Batch> FashionMNIST::eval_batches() const {
  std::vector<Batch> out;
  for (int64_t first = 0; first < test_x_.size(0); first += kEvalBatch) {
    const auto last = std::min(test_x_.size(0), first + kEvalBatch);
    out.push_back({test_x_.slice(0, first, last), test_y_.slice(0, first, last)});
  }
  return out;
}

void FashionMNIST::save(torch::serialize::OutputArchive& archive) const {
  sampler_.save(archive);
}

void FashionMNIST::load(torch::serialize::InputArchive& archive) { sampler_.load(archive); }

}  // namespace blockopt::data
