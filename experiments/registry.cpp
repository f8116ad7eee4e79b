#include <blockopt/experiments/registry.h>
#include <blockopt/models/gaussian.h>
#include <blockopt/models/mlp.h>

namespace blockopt::experiments {

namespace {

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

std::shared_ptr<models::DataSource> build_gaussian(ConfigNode& node, uint64_t seed) {
  models::GaussianDataOptions defaults;
  models::GaussianDataOptions o;
  o.samples(node.get<int64_t>("samples", defaults.samples()));
  node.check(o.samples() > 0, "samples", "must be > 0");
  o.dim(node.get<int64_t>("dim", defaults.dim()));
  node.check(o.dim() > 0, "dim", "must be > 0");
  o.classes(node.get<int64_t>("classes", defaults.classes()));
  node.check(o.classes() >= 2, "classes", "must be >= 2");
  o.batch(node.get<int64_t>("batch", defaults.batch()));
  node.check(o.batch() >= 0 && o.batch() <= o.samples(), "batch",
             "must be in [0, samples] (0 = full batch)");
  o.seed(node.get<uint64_t>("seed", seed));
  return std::make_shared<models::GaussianData>(o);
}

std::shared_ptr<models::Model> build_mlp(ConfigNode& node, const models::DataSource& data) {
  auto hidden = node.get<std::vector<int64_t>>("hidden", {});
  for (auto h : hidden) node.check(h > 0, "hidden", "every hidden width must be > 0");
  std::vector<int64_t> widths{data.input_dim()};
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(data.num_classes());
  models::MLPOptions o(widths);
  o.activation(parse_or_fail(node, "activation", "relu", &models::parse_activation));
  o.bias(node.get<bool>("bias", o.bias()));
  o.init(parse_or_fail(node, "init", "lecun_normal", &models::parse_init));
  return std::make_shared<models::MLP>(o);
}

}  // namespace

std::shared_ptr<models::DataSource> build_data(ConfigNode node, uint64_t seed) {
  const auto type = node.get<std::string>("type", "gaussian");
  if (type == "gaussian") return build_gaussian(node, seed);
  node.fail("type", "unknown data type '" + type + "' (known: gaussian)");
}

std::shared_ptr<models::Model> build_model(ConfigNode node, const models::DataSource& data) {
  const auto type = node.get<std::string>("type", "mlp");
  if (type == "mlp" || type == "linear") {
    if (type == "linear") {
      // The bias-free linear model is the MLP without hidden layers.
      node.check(!node.has("hidden"), "hidden", "a linear model has no hidden layers");
    }
    return build_mlp(node, data);
  }
  node.fail("type", "unknown model type '" + type + "' (known: mlp, linear)");
}

}  // namespace blockopt::experiments
