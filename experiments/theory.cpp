#include <blockopt/experiments/theory.h>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>
#include <utility>

namespace blockopt::experiments {

const std::vector<std::string>& theory_kinds() {
  static const std::vector<std::string> kinds = {"linear_ce_ratio", "theorem1", "class_slopes",
                                                 "training_dynamics"};
  return kinds;
}

namespace {

struct ProbedRun {
  std::string id;
  YAML::Node config;                  // config.resolved.yaml
  std::vector<nlohmann::json> probes;  // records with block ratios, in step order
};

std::vector<nlohmann::json> ratio_records(const fs::path& probes) {
  std::vector<nlohmann::json> records;
  for (auto& r : read_jsonl(probes)) {
    if (r.contains("ratio_sq_mean")) records.push_back(std::move(r));
  }
  return records;
}

// A number from the run's resolved config; the kinds that need one are for Gaussian data.
double config_number(const ProbedRun& run, const char* section, const char* key) {
  const auto value = run.config[section][key];
  if (!value) {
    throw std::runtime_error(fmt::format("{}: this theory kind needs {}.{} (Gaussian data) in config.resolved.yaml",
                                         run.id, section, key));
  }
  return value.as<double>();
}

// Least-squares slope of log y against log x, leaving out the smallest x when there are 3 or
// more points (the laws are asymptotic in C; C = 2 is a degenerate case).
double log_log_slope(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t first = x.size() >= 3 ? 1 : 0;
  const double n = static_cast<double>(x.size() - first);
  double mx = 0, my = 0;
  for (size_t i = first; i < x.size(); ++i) {
    mx += std::log(x[i]) / n;
    my += std::log(y[i]) / n;
  }
  double sxy = 0, sxx = 0;
  for (size_t i = first; i < x.size(); ++i) {
    sxy += (std::log(x[i]) - mx) * (std::log(y[i]) - my);
    sxx += std::pow(std::log(x[i]) - mx, 2);
  }
  return sxy / sxx;
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

// Sample standard deviation (0 for a single value).
double sample_sd(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double sum_sq = 0;
  for (double x : v) sum_sq += (x - m) * (x - m);
  return std::sqrt(sum_sq / static_cast<double>(v.size() - 1));
}

// A table row as (column, value) cells, so each value is written next to its column's name.
// theory.json keeps the names once, in "columns", and each row as a list in that order.
using Row = std::vector<std::pair<std::string, nlohmann::json>>;

void add_row(nlohmann::json& table, const Row& row) {
  nlohmann::json columns = nlohmann::json::array(), values = nlohmann::json::array();
  for (const auto& [column, value] : row) {
    columns.push_back(column);
    values.push_back(value);
  }
  if (!table.contains("columns")) table["columns"] = columns;
  if (table["columns"] != columns) throw std::logic_error("theory table rows with different columns");
  table["rows"].push_back(values);
}

nlohmann::json series(const std::string& name, const std::vector<double>& x,
                      const std::vector<double>& y, bool line) {
  return {{"name", name}, {"x", x}, {"y", y}, {"line", line}};
}

double classes_of(const ProbedRun& r) { return config_number(r, "data", "classes"); }
// The static-force kinds read the first probe record (the configs probe at step 0).
const nlohmann::json& first_probe(const ProbedRun& r) { return r.probes.front(); }

nlohmann::json linear_ce_ratio(const std::vector<ProbedRun>& runs) {
  nlohmann::json table = {{"claim", "linear model + CE, N >> d: mean r_ij -> 1/(C-1)"}};
  std::map<double, std::vector<double>> by_classes;  // C -> mean r_ij per seed
  for (const auto& run : runs) by_classes[classes_of(run)].push_back(first_probe(run)["ratio_mean"].get<double>());
  std::vector<double> cs, measured, predicted;
  for (const auto& [c, values] : by_classes) {
    const double m = mean(values), p = 1.0 / (c - 1.0);
    add_row(table, {{"C", c}, {"seeds", values.size()}, {"measured mean r_ij", m},
                    {"predicted 1/(C-1)", p}, {"(C-1) r_ij", m / p}});
    table["checks"].push_back({{"quantity", fmt::format("(C-1) r_ij at C = {}", c)}, {"measured", m / p}, {"predicted", 1.0}});
    cs.push_back(c);
    measured.push_back(m);
    predicted.push_back(p);
  }
  table["plot"] = {{"title", "off/diag block ratio vs classes"}, {"xlabel", "classes C"},
                   {"ylabel", "mean r_ij"}, {"log_x", true}, {"log_y", true},
                   {"series", {series("measured", cs, measured, false), series("1/(C-1)", cs, predicted, true)}}};
  return table;
}

// Logit variance at initialisation: LeCun normal gives Var(w^T x) = 1, PyTorch's default
// U(-1/sqrt(d), 1/sqrt(d)) gives 1/3.
double logit_variance(const std::string& init) { return init == "pytorch_default" ? 1.0 / 3.0 : 1.0; }

double theorem1_limit(double gamma, double s) {
  return (gamma * std::exp(2.0 * s) + 1.0) / (gamma * std::exp(s) + 1.0);
}

nlohmann::json theorem1(const std::vector<ProbedRun>& runs) {
  nlohmann::json table = {
      {"claim", "Theorem 1, linear model + CE: C^2 mean r_ij^2 -> (g e^{2s} + 1)/(g e^s + 1), g = d/N, s = logit variance"}};
  std::map<std::string, std::map<double, std::vector<double>>> values;  // init -> gamma -> C^2 r^2
  std::map<std::string, double> classes;
  for (const auto& run : runs) {
    const double c = classes_of(run);
    const double gamma = config_number(run, "data", "dim") / config_number(run, "data", "samples");
    const auto init = run.config["model"]["init"].as<std::string>();
    values[init][gamma].push_back(c * c * first_probe(run)["ratio_sq_mean"].get<double>());
    classes[init] = c;
  }
  nlohmann::json plot_series = nlohmann::json::array();
  for (const auto& [init, by_gamma] : values) {
    std::vector<double> gammas, measured, predicted;
    for (const auto& [gamma, v] : by_gamma) {
      const double m = mean(v), p = theorem1_limit(gamma, logit_variance(init));
      add_row(table, {{"init", init}, {"g = d/N", gamma}, {"C", classes[init]}, {"seeds", v.size()},
                      {"measured C^2 r^2", m}, {"sd over seeds", sample_sd(v)}, {"predicted", p},
                      {"measured / predicted", m / p}});
      table["checks"].push_back({{"quantity", fmt::format("C^2 r^2 ({}, g = {:.3g})", init, gamma)},
                                 {"measured", m}, {"predicted", p}});
      gammas.push_back(gamma);
      measured.push_back(m);
      predicted.push_back(p);
    }
    plot_series.push_back(series(init + " measured", gammas, measured, false));
    plot_series.push_back(series(init + " limit", gammas, predicted, true));
  }
  table["plot"] = {{"title", "Theorem 1: C^2 r^2 vs g = d/N"}, {"xlabel", "g = d/N"}, {"ylabel", "C^2 mean r_ij^2"},
                   {"log_x", true}, {"log_y", false}, {"series", plot_series}};
  return table;
}

// The predicted power law y = a C^slope through the measured point at the second-smallest C
// (C = 2 sits outside the asymptotic regime), for the plot.
std::vector<double> reference_line(const std::vector<double>& cs, const std::vector<double>& y, double slope) {
  const size_t anchor = cs.size() > 1 ? 1 : 0;
  std::vector<double> line;
  for (double c : cs) line.push_back(y[anchor] * std::pow(c / cs[anchor], slope));
  return line;
}

nlohmann::json class_slopes(const std::vector<ProbedRun>& runs) {
  nlohmann::json table = {
      {"claim", "Theorem 2, 1 hidden layer: mean r_ij^2 ~ C^slope; hidden rows slope -1, output rows "
                "slope -2 (CE); output rows exactly 0 (MSE). Slopes fitted on all but the smallest C."}};
  // loss -> C -> (hidden, output) values over seeds
  std::map<std::string, std::map<double, std::pair<std::vector<double>, std::vector<double>>>> values;
  for (const auto& run : runs) {
    const auto& pairs = first_probe(run)["ratio_sq_by_tensor_pair"];
    const size_t last = pairs.size() - 1;
    auto& cell = values[run.config["train"]["loss"].as<std::string>()][classes_of(run)];
    cell.first.push_back(pairs[0][0].get<double>());
    cell.second.push_back(pairs[last][last].get<double>());
  }
  nlohmann::json plot_series = nlohmann::json::array();
  for (const auto& [loss, by_c] : values) {
    std::vector<double> cs, hidden, output;
    for (const auto& [c, v] : by_c) {
      cs.push_back(c);
      hidden.push_back(mean(v.first));
      output.push_back(mean(v.second));
      add_row(table, {{"loss", loss}, {"C", c}, {"seeds", v.first.size()},
                      {"hidden rows mean r^2", hidden.back()}, {"output rows mean r^2", output.back()}});
    }
    table["checks"].push_back({{"quantity", loss + ": hidden rows slope in C"},
                               {"measured", log_log_slope(cs, hidden)}, {"predicted", -1.0}});
    if (loss == "mse") {
      table["checks"].push_back({{"quantity", "mse: largest output rows mean r^2"},
                                 {"measured", *std::max_element(output.begin(), output.end())}, {"predicted", 0.0}});
    } else {
      table["checks"].push_back({{"quantity", loss + ": output rows slope in C"},
                                 {"measured", log_log_slope(cs, output)}, {"predicted", -2.0}});
      plot_series.push_back(series(loss + " output rows", cs, output, false));
      plot_series.push_back(series("C^-2", cs, reference_line(cs, output, -2.0), true));
    }
    plot_series.push_back(series(loss + " hidden rows", cs, hidden, false));
    plot_series.push_back(series("C^-1", cs, reference_line(cs, hidden, -1.0), true));
  }
  table["plot"] = {{"title", "1 hidden layer: mean r^2 vs classes"}, {"xlabel", "classes C"},
                   {"ylabel", "mean r_ij^2"}, {"log_x", true}, {"log_y", true}, {"series", plot_series}};
  return table;
}

nlohmann::json training_dynamics(const std::vector<ProbedRun>& runs) {
  nlohmann::json table = {
      {"claim", "dynamic force: cross-layer blocks (H_wv ~ optimality gap) shrink as training proceeds"}};
  nlohmann::json plot_series = nlohmann::json::array();
  for (const auto& run : runs) {
    std::vector<double> steps, cross;
    for (const auto& record : run.probes) {
      // Mean r^2 over the pairs of different tensors (layers).
      const auto& pairs = record["ratio_sq_by_tensor_pair"];
      double sum = 0;
      int count = 0;
      for (size_t s = 0; s < pairs.size(); ++s) {
        for (size_t t = 0; t < pairs.size(); ++t) {
          if (s == t) continue;
          sum += pairs[s][t].get<double>();
          ++count;
        }
      }
      steps.push_back(record["step"].get<double>());
      cross.push_back(count > 0 ? sum / count : std::nan(""));
      add_row(table, {{"run", run.id}, {"step", record["step"]},
                      {"probe loss", record.value("loss", std::nan(""))},
                      {"mean r^2", record["ratio_sq_mean"]}, {"cross-layer mean r^2", cross.back()}});
    }
    if (steps.size() > 1) {
      table["checks"].push_back({{"quantity", run.id + ": cross-layer r^2, last probe / first probe"},
                                 {"measured", cross.back() / cross.front()}, {"predicted", "< 1"}});
    }
    plot_series.push_back(series(run.id + " cross-layer", steps, cross, true));
  }
  table["plot"] = {{"title", "cross-layer block ratio during training"}, {"xlabel", "step"},
                   {"ylabel", "mean r_ij^2 (different layers)"}, {"log_x", false}, {"log_y", true},
                   {"series", plot_series}};
  return table;
}

}  // namespace

nlohmann::json evaluate_theory(const std::vector<fs::path>& run_dirs) {
  std::string kind;
  std::vector<ProbedRun> runs;
  nlohmann::json missing = nlohmann::json::array();
  for (const auto& dir : run_dirs) {
    const auto config_path = dir / "config.resolved.yaml";
    if (!fs::exists(config_path)) {
      missing.push_back(dir.filename().string());
      continue;
    }
    ProbedRun run{dir.filename().string(), YAML::LoadFile(config_path.string()), ratio_records(dir / "hessian" / "probes.jsonl")};
    if (!run.config["theory"]) continue;
    const auto run_kind = run.config["theory"]["kind"].as<std::string>();
    if (!kind.empty() && run_kind != kind) {
      throw std::runtime_error(fmt::format("{}: theory kind '{}' differs from the other runs' '{}'", dir.string(), run_kind, kind));
    }
    kind = run_kind;
    if (run.probes.empty()) {
      missing.push_back(run.id);
      continue;
    }
    runs.push_back(std::move(run));
  }
  if (kind.empty()) return nullptr;
  nlohmann::json table;
  if (runs.empty()) table = {{"claim", "no run has a probe record with block ratios"}};
  else if (kind == "linear_ce_ratio") table = linear_ce_ratio(runs);
  else if (kind == "theorem1") table = theorem1(runs);
  else if (kind == "class_slopes") table = class_slopes(runs);
  else table = training_dynamics(runs);
  table["kind"] = kind;
  table["missing"] = missing;
  return table;
}

}  // namespace blockopt::experiments
