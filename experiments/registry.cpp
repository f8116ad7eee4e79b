#include <blockopt/experiments/registry.h>
#include <blockopt/models/cnn.h>
#include <blockopt/data/corpus.h>
#include <blockopt/data/fashion_mnist.h>
#include <blockopt/data/gaussian.h>
#include <blockopt/models/gpt.h>
#include <blockopt/models/mlp.h>
#include <blockopt/data/text.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

namespace blockopt::experiments {

namespace {

// NOTE: a tensor or model above 2^30 elements (4 GiB in float32) is a typo such as an extra
// zero, not an experiment for this CPU framework (the shipped configs stay below 10^8);
// refusing it names the key instead of ending in an allocation failure or the OOM killer.
constexpr double kMaxElements = 1073741824.0;

// Fails naming `key` when `elements` (computed in double: no overflow) exceeds kMaxElements.
void check_elements(ConfigNode& node, const std::string& key, double elements,
                    const std::string& what) {
  node.check(elements <= kMaxElements, key,
             fmt::format("{} would have {:.3g} elements, more than the limit of 2^30", what,
                         elements));
}

template <typename Enum>
Enum parse_or_fail(ConfigNode& node, const std::string& key, const std::string& fallback,
                   Enum (*parse)(const std::string&)) {
  const auto text = node.get<std::string>(key, fallback);
  try {
    return parse(text);
  } catch (const std::invalid_argument& e) {
    node.fail(key, e.what());
  }
}

std::shared_ptr<data::DataSource> build_gaussian(ConfigNode& node, uint64_t seed,
                                                 torch::Dtype dtype) {
  data::GaussianDataOptions defaults;
  data::GaussianDataOptions o;
  o.dtype(dtype);
  o.samples(node.get<int64_t>("samples", defaults.samples()));
  node.check(o.samples() > 0, "samples", "must be > 0");
  o.dim(node.get<int64_t>("dim", defaults.dim()));
  node.check(o.dim() > 0, "dim", "must be > 0");
  o.classes(node.get<int64_t>("classes", defaults.classes()));
  node.check(o.classes() >= 2, "classes", "must be >= 2");
  o.batch(node.get<int64_t>("batch", defaults.batch()));
  node.check(o.batch() >= 0 && o.batch() <= o.samples(), "batch",
             "must be in [0, samples] (0 = full batch)");
  check_elements(node, "samples", static_cast<double>(o.samples()) * static_cast<double>(o.dim()),
                 "the data (samples x dim)");
  o.seed(node.get<uint64_t>("seed", seed));
  return std::make_shared<data::GaussianData>(o);
}

std::shared_ptr<models::Model> build_mlp(ConfigNode& node, const data::DataSource& data) {
  auto hidden = node.get<std::vector<int64_t>>("hidden", {});
  for (auto h : hidden) node.check(h > 0, "hidden", "every hidden width must be > 0");
  std::vector<int64_t> widths{data.input_dim()};
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(data.num_classes());
  models::MLPOptions o(widths);
  o.activation(parse_or_fail(node, "activation", "relu", &models::parse_activation));
  o.bias(node.get<bool>("bias", o.bias()));
  double parameters = 0.0;
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    parameters += (static_cast<double>(widths[i]) + o.bias()) * static_cast<double>(widths[i + 1]);
  }
  check_elements(node, "hidden", parameters, "the model");
  o.init(parse_or_fail(node, "init", "lecun_normal", &models::parse_init));
  return std::make_shared<models::MLP>(o);
}

std::shared_ptr<data::DataSource> build_fashion_mnist(ConfigNode& node, uint64_t seed) {
  data::FashionMNISTOptions o;
  o.dir(node.get<std::string>("dir", o.dir()));
  o.batch(node.get<int64_t>("batch", o.batch()));
  node.check(o.batch() > 0 && o.batch() <= 60000, "batch", "must be in [1, 60000]");
  o.train_samples(node.get<int64_t>("train_samples", o.train_samples()));
  node.check(o.train_samples() >= 0 && o.train_samples() <= 60000, "train_samples",
             "must be in [0, 60000] (0 = all)");
  node.check(o.train_samples() == 0 || o.batch() <= o.train_samples(), "batch",
             "must be <= train_samples");
  o.eval_split(node.get<std::string>("eval_split", o.eval_split()));
  node.check(o.eval_split() == "test" || o.eval_split() == "train", "eval_split",
             "must be test or train");
  o.eval_samples(node.get<int64_t>("eval_samples", o.eval_samples()));
  node.check(o.eval_samples() >= 0 && o.eval_samples() <= 10000, "eval_samples",
             "must be in [0, 10000] (0 = the whole evaluation split)");
  o.seed(node.get<uint64_t>("seed", seed));
  try {
    return std::make_shared<data::FashionMNIST>(o);
  } catch (const c10::Error& e) {
    node.fail("dir", e.what_without_backtrace());
  }
}

// Image data: input_dim() is C*H*W of square images with `in_channels` channels.
std::shared_ptr<models::Model> build_cnn(ConfigNode& node, const data::DataSource& data) {
  models::CNNOptions o;
  o.in_channels(node.get<int64_t>("in_channels", o.in_channels()));
  node.check(o.in_channels() > 0, "in_channels", "must be > 0");
  const auto pixels = data.input_dim() / o.in_channels();
  o.image_size(static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(pixels)))));
  node.check(o.image_size() * o.image_size() * o.in_channels() == data.input_dim(),
             "in_channels", "the data's inputs are not square images with this many channels");
  o.classes(data.num_classes());
  o.channels(node.get<int64_t>("channels", o.channels()));
  node.check(o.channels() > 0, "channels", "must be > 0");
  o.stages(node.get<int64_t>("stages", o.stages()));
  node.check(o.stages() > 0, "stages", "must be > 0");
  o.blocks(node.get<int64_t>("blocks", o.blocks()));
  node.check(o.blocks() > 0, "blocks", "must be > 0");
  // The widest stage dominates: channels doubles at every stage after the first.
  const double widest =
      static_cast<double>(o.channels()) * std::pow(2.0, static_cast<double>(o.stages() - 1));
  const double convolutions = static_cast<double>(o.blocks()) * static_cast<double>(o.stages());
  check_elements(node, "channels", 2.0 * 9.0 * widest * widest * convolutions,
                 "the model (about 2 x 9 x widest^2 x blocks x stages)");
  return std::make_shared<models::CNN>(o);
}

// Token files of blockopt-tokenize in `dir`, checked against its meta.json.
std::pair<torch::Tensor, torch::Tensor> load_token_dir(ConfigNode& node, const std::string& dir,
                                                       const std::string& corpus,
                                                       int64_t vocab) {
  namespace fs = std::filesystem;
  const auto command = "blockopt-tokenize --corpus " + corpus + " --vocab " +
                       std::to_string(vocab) + " --out " + dir;
  for (const char* file : {"meta.json", "train.bin", "val.bin"}) {
    node.check(fs::exists(fs::path(dir) / file), "token_dir",
               "no " + std::string(file) + " in '" + dir +
                   "': produce the SentencePiece tokens first with `" + command + "`");
  }
  std::ifstream meta_file(fs::path(dir) / "meta.json");
  auto meta = nlohmann::json::parse(meta_file, nullptr, /*allow_exceptions=*/false);
  node.check(!meta.is_discarded() && meta.contains("vocab_size"), "token_dir",
             dir + "/meta.json is corrupted (no vocab_size); re-run `" + command + "`");
  const auto meta_vocab = meta["vocab_size"].get<int64_t>();
  node.check(meta_vocab == vocab, "token_dir",
             dir + " holds a vocab " + std::to_string(meta_vocab) + " tokenization, but " +
                 "tokenizer.vocab is " + std::to_string(vocab) + "; run `" + command + "`");
  try {
    return {data::load_token_file((fs::path(dir) / "train.bin").string(), vocab),
            data::load_token_file((fs::path(dir) / "val.bin").string(), vocab)};
  } catch (const c10::Error& e) {
    node.fail("token_dir", e.what_without_backtrace());
  }
}

std::shared_ptr<data::DataSource> build_text(ConfigNode& node, uint64_t seed) {
  data::TextDataOptions o;
  const auto corpus = node.get<std::string>("corpus", "kjv");
  node.check(corpus == "kjv", "corpus", "unknown corpus '" + corpus + "' (known: kjv)");
  auto tokenizer = node.child("tokenizer");
  const auto kind = tokenizer.get<std::string>("type", "byte");
  o.context(node.get<int64_t>("context", o.context()));
  node.check(o.context() > 0, "context", "must be > 0");
  o.batch(node.get<int64_t>("batch", o.batch()));
  node.check(o.batch() > 0, "batch", "must be > 0");
  o.eval_windows(node.get<int64_t>("eval_windows", o.eval_windows()));
  node.check(o.eval_windows() > 0, "eval_windows", "must be > 0");
  check_elements(node, "context",
                 static_cast<double>(std::max(o.batch(), o.eval_windows())) *
                     (static_cast<double>(o.context()) + 1.0),
                 "a batch of windows (max(batch, eval_windows) x (context + 1))");
  o.seed(node.get<uint64_t>("seed", seed));
  torch::Tensor train, val;
  if (kind == "byte") {
    o.vocab(tokenizer.get<int64_t>("vocab", 256));
    tokenizer.check(o.vocab() == 256, "vocab", "the byte tokenizer has vocab 256");
    std::string text;
    try {
      text = data::read_corpus(corpus);
    } catch (const std::runtime_error& e) {
      node.fail("corpus", e.what());
    }
    auto tokens = data::byte_tokens(text);
    const auto split = static_cast<int64_t>(data::kTrainFraction * tokens.numel());
    train = tokens.slice(0, 0, split);
    val = tokens.slice(0, split);
  } else if (kind == "sentencepiece") {
    o.vocab(tokenizer.get<int64_t>("vocab"));
    tokenizer.check(o.vocab() > 0 && o.vocab() <= 65536, "vocab",
                    "must be in [1, 65536] (tokens are stored as uint16)");
    const auto dir = node.get<std::string>(
        "token_dir", "data/" + corpus + "-sp" + std::to_string(o.vocab()));
    std::tie(train, val) = load_token_dir(node, dir, corpus, o.vocab());
  } else {
    tokenizer.fail("type", "unknown tokenizer '" + kind + "' (known: byte, sentencepiece)");
  }
  try {
    return std::make_shared<data::TextData>(train, val, o);
  } catch (const c10::Error& e) {
    node.fail("context", e.what_without_backtrace());
  }
}

// Sequence data: input_dim() is the context length, num_classes() the vocabulary.
std::shared_ptr<models::Model> build_gpt(ConfigNode& node, const data::DataSource& data) {
  models::GPTOptions o;
  o.vocab(node.get<int64_t>("vocab", data.num_classes()));
  node.check(o.vocab() >= data.num_classes(), "vocab",
             "is smaller than the data vocabulary (" + std::to_string(data.num_classes()) +
                 "): token ids would overflow the embedding");
  o.d_model(node.get<int64_t>("d_model", o.d_model()));
  node.check(o.d_model() > 0, "d_model", "must be > 0");
  o.layers(node.get<int64_t>("layers", o.layers()));
  node.check(o.layers() > 0, "layers", "must be > 0");
  o.heads(node.get<int64_t>("heads", o.heads()));
  node.check(o.heads() > 0 && o.d_model() % o.heads() == 0, "heads",
             "must be > 0 and divide d_model");
  o.context(node.get<int64_t>("context", data.input_dim()));
  node.check(o.context() >= data.input_dim(), "context",
             "is shorter than the data context (" + std::to_string(data.input_dim()) + ")");
  o.bias(node.get<bool>("bias", o.bias()));
  o.tie_weights(node.get<bool>("tie_weights", o.tie_weights()));
  const double width = static_cast<double>(o.d_model());
  const double context = static_cast<double>(o.context());
  // Embeddings and head, 12 d^2 per layer (attention 4 d^2, MLP 8 d^2), the causal mask.
  check_elements(node, "d_model",
                 (2.0 * static_cast<double>(o.vocab()) + context) * width +
                     12.0 * width * width * static_cast<double>(o.layers()) + context * context,
                 "the model (about (2 vocab + context) d_model + 12 d_model^2 layers + context^2)");
  return std::make_shared<models::GPT>(o);
}

}  // namespace

std::shared_ptr<data::DataSource> build_data(ConfigNode node, uint64_t seed, torch::Dtype dtype) {
  const auto type = node.get<std::string>("type", "gaussian");
  if (type == "gaussian") return build_gaussian(node, seed, dtype);
  if (type == "text") return build_text(node, seed);
  if (type == "fashion_mnist") {
    node.check(dtype == torch::kFloat32, "type",
               "fashion_mnist images are float32; runtime.dtype float64 needs gaussian or text data");
    return build_fashion_mnist(node, seed);
  }
  node.fail("type", "unknown data type '" + type + "' (known: gaussian, text, fashion_mnist)");
}

std::shared_ptr<models::Model> build_model(ConfigNode node, const data::DataSource& data) {
  const auto type = node.get<std::string>("type", "mlp");
  if (type == "mlp" || type == "linear") {
    if (type == "linear") {
      // The bias-free linear model is the MLP without hidden layers.
      node.check(!node.has("hidden"), "hidden", "a linear model has no hidden layers");
    }
    return build_mlp(node, data);
  }
  if (type == "gpt") return build_gpt(node, data);
  if (type == "cnn") return build_cnn(node, data);
  node.fail("type", "unknown model type '" + type + "' (known: mlp, linear, gpt, cnn)");
}

}  // namespace blockopt::experiments
