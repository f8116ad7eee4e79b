#include <blockopt/experiments/statistics.h>
#include <blockopt/experiments/theory.h>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace blockopt::experiments {

const std::vector<std::string>& theory_kinds() {
  static const std::vector<std::string> kinds = {"linear_ce_ratio", "theorem1", "class_slopes", "vocab_slopes",
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
    if (r.contains("ratio_sq_mean") || r.contains("ratio_of_mean_squares")) records.push_back(std::move(r));
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

// A number from a probe record; records written before it existed name the run to re-probe.
double probe_number(const ProbedRun& run, const nlohmann::json& record, const char* key) {
  if (!record.contains(key) || !record[key].is_number()) {
    throw std::runtime_error(fmt::format("{}: its probe record has no {} (written by an older "
                                         "blockopt); run it again", run.id, key));
  }
  return record[key].get<double>();
}

// The (s, t) entry of a probe record's (T, T) by-tensor-pair matrix `key`.
double pair_number(const ProbedRun& run, const nlohmann::json& record, const char* key, size_t s,
                   size_t t) {
  if (!record.contains(key)) probe_number(run, record, key);  // throws, naming the run
  return record[key].at(s).at(t).get<double>();
}

// Least-squares slope of log y against log x over every (x, y) point (seeds included), with its
// 95% CI, leaving out the smallest x when there are 3 or more distinct x (the laws are
// asymptotic in C; C = 2 is a degenerate case).
LineFit log_log_fit(const std::vector<double>& x, const std::vector<double>& y) {
  std::vector<double> distinct = x;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  const double smallest = distinct.size() >= 3 ? distinct.front() : -1.0;
  std::vector<double> lx, ly;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == smallest) continue;
    lx.push_back(std::log(x[i]));
    ly.push_back(std::log(y[i]));
  }
  return fit_line(lx, ly);
}

// A check of a measured mean (or slope) with its 95% CI half-width against a prediction.
nlohmann::json check(const std::string& quantity, double measured, double half_width,
                     const nlohmann::json& predicted) {
  return {{"quantity", quantity}, {"measured", measured}, {"ci95", half_width}, {"predicted", predicted}};
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
  nlohmann::json table = {{"claim", "linear model + CE, N >> d: mean r_ij -> 1/(C-1), and so does "
                                    "sqrt(mean ||H_ij||^2 / mean ||H_ii||^2); mean +- 95% CI over seeds"}};
  std::map<double, std::pair<std::vector<double>, std::vector<double>>> by_classes;  // C -> per seed
  for (const auto& run : runs) {
    auto& cell = by_classes[classes_of(run)];
    cell.first.push_back(probe_number(run, first_probe(run), "ratio_mean"));
    cell.second.push_back(std::sqrt(probe_number(run, first_probe(run), "norm_sq_ratio")));
  }
  std::vector<double> cs, measured, predicted;
  for (const auto& [c, values] : by_classes) {
    const auto pairs = mean_interval(values.first), norms = mean_interval(values.second);
    const double p = 1.0 / (c - 1.0);
    add_row(table, {{"C", c}, {"seeds", values.first.size()}, {"measured mean r_ij", pairs.mean},
                    {"CI95 +-", pairs.half_width}, {"predicted 1/(C-1)", p}, {"(C-1) r_ij", pairs.mean / p},
                    {"(C-1) sqrt(ratio of mean squares)", norms.mean / p},
                    {"CI95 +- (ratio of mean squares)", norms.half_width / p}});
    table["checks"].push_back(check(fmt::format("(C-1) r_ij at C = {}", c), pairs.mean / p,
                                    pairs.half_width / p, 1.0));
    cs.push_back(c);
    measured.push_back(pairs.mean);
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
      {"claim", "Theorem 1, linear model + CE: C^2 mean ||H_ij||^2 / mean ||H_ii||^2 (the ratio of "
                "mean squares) -> (g e^{2s} + 1)/(g e^s + 1) as d, N -> infinity with g = d/N, then "
                "C -> infinity; s = logit variance (1 LeCun, 1/3 PyTorch default). The mean of "
                "per-pair ratios C^2 mean r_ij^2 beside it; mean +- 95% CI over seeds"}};
  struct Cell {
    std::vector<double> norm_ratio, pair_ratio;  // per seed
  };
  std::map<std::tuple<std::string, double, double>, Cell> cells;  // (init, g, C)
  for (const auto& run : runs) {
    const double c = classes_of(run);
    const double gamma = config_number(run, "data", "dim") / config_number(run, "data", "samples");
    auto& cell = cells[{run.config["model"]["init"].as<std::string>(), gamma, c}];
    cell.norm_ratio.push_back(c * c * probe_number(run, first_probe(run), "norm_sq_ratio"));
    cell.pair_ratio.push_back(c * c * probe_number(run, first_probe(run), "ratio_sq_mean"));
  }
  std::set<double> all_classes;
  for (const auto& [key, cell] : cells) all_classes.insert(std::get<2>(key));
  const bool against_classes = all_classes.size() > 1;  // else the plot's x is g
  // Plot series: measured per (init, g) against C, or per init against g; limit lines alike.
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> measured, limits;
  for (const auto& [key, cell] : cells) {
    const auto& [init, gamma, c] = key;
    const auto norms = mean_interval(cell.norm_ratio), pairs = mean_interval(cell.pair_ratio);
    const double p = theorem1_limit(gamma, logit_variance(init));
    add_row(table, {{"init", init}, {"g = d/N", gamma}, {"C", c}, {"seeds", cell.norm_ratio.size()},
                    {"C^2 ratio of mean squares", norms.mean}, {"CI95 +-", norms.half_width},
                    {"C^2 mean r^2", pairs.mean}, {"CI95 +- (mean r^2)", pairs.half_width},
                    {"limit", p}, {"ratio of mean squares / limit", norms.mean / p}});
    if (c == *all_classes.rbegin()) {
      table["checks"].push_back(check(fmt::format("C^2 ratio of mean squares ({}, g = {:.3g}, C = {})",
                                                  init, gamma, c),
                                      norms.mean, norms.half_width, p));
    }
    const auto name = against_classes ? fmt::format("{} g = {:.3g}", init, gamma) : init;
    const double x = against_classes ? c : gamma;
    measured[name].first.push_back(x);
    measured[name].second.push_back(norms.mean);
    limits[name].first.push_back(x);
    limits[name].second.push_back(p);
  }
  nlohmann::json plot_series = nlohmann::json::array();
  for (const auto& [name, points] : measured) {
    plot_series.push_back(series(name + " measured", points.first, points.second, false));
    plot_series.push_back(series(name + " limit", limits[name].first, limits[name].second, true));
  }
  table["plot"] = {{"title", against_classes ? "Theorem 1: C^2 ratio of mean squares vs C"
                                             : "Theorem 1: C^2 ratio of mean squares vs g = d/N"},
                   {"xlabel", against_classes ? "classes C" : "g = d/N"},
                   {"ylabel", "C^2 mean ||H_ij||^2 / mean ||H_ii||^2"},
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
      {"claim", "Theorem 2, 1 hidden layer: mean ||H_ij||^2 / mean ||H_ii||^2 ~ C^slope; hidden rows "
                "slope -1, output rows slope -2 (CE); output rows exactly 0 (MSE). Slopes fitted on "
                "every seed's point but those at the smallest C, with 95% CIs; the mean of per-pair "
                "ratios r^2 beside them"}};
  // One (C, hidden, output) point per run and quantity.
  struct Points {
    std::vector<double> c, hidden, output, hidden_pairs, output_pairs;
  };
  std::map<std::string, Points> by_loss;
  for (const auto& run : runs) {
    const auto& record = first_probe(run);
    if (!record.contains("ratio_sq_by_tensor_pair")) probe_number(run, record, "ratio_sq_by_tensor_pair");
    const size_t last = record["ratio_sq_by_tensor_pair"].size() - 1;
    auto& p = by_loss[run.config["train"]["loss"].as<std::string>()];
    p.c.push_back(classes_of(run));
    p.hidden.push_back(pair_number(run, record, "norm_sq_ratio_by_tensor_pair", 0, 0));
    p.output.push_back(pair_number(run, record, "norm_sq_ratio_by_tensor_pair", last, last));
    p.hidden_pairs.push_back(pair_number(run, record, "ratio_sq_by_tensor_pair", 0, 0));
    p.output_pairs.push_back(pair_number(run, record, "ratio_sq_by_tensor_pair", last, last));
  }
  nlohmann::json plot_series = nlohmann::json::array();
  for (const auto& [loss, p] : by_loss) {
    // Means over seeds at each C, for the table and the plot.
    std::map<double, std::vector<size_t>> runs_at;
    for (size_t i = 0; i < p.c.size(); ++i) runs_at[p.c[i]].push_back(i);
    std::vector<double> cs, hidden, output;
    for (const auto& [c, indices] : runs_at) {
      auto at = [&](const std::vector<double>& values) {
        std::vector<double> picked;
        for (size_t i : indices) picked.push_back(values[i]);
        return mean_interval(picked);
      };
      const auto h = at(p.hidden), o = at(p.output);
      cs.push_back(c);
      hidden.push_back(h.mean);
      output.push_back(o.mean);
      add_row(table, {{"loss", loss}, {"C", c}, {"seeds", indices.size()},
                      {"hidden rows ratio of mean squares", h.mean}, {"CI95 +- (hidden)", h.half_width},
                      {"output rows ratio of mean squares", o.mean}, {"CI95 +- (output)", o.half_width},
                      {"hidden rows mean r^2", at(p.hidden_pairs).mean},
                      {"output rows mean r^2", at(p.output_pairs).mean}});
    }
    // The fitted slope of log y in log C with its CI, against `predicted`.
    auto slope_check = [&](const std::string& quantity, const std::vector<double>& y, double predicted) {
      const auto fit = log_log_fit(p.c, y);
      return check(loss + ": " + quantity, fit.slope, fit.half_width, predicted);
    };
    table["checks"].push_back(slope_check("hidden rows slope in C", p.hidden, -1.0));
    table["checks"].push_back(slope_check("hidden rows slope in C (mean r^2)", p.hidden_pairs, -1.0));
    if (loss == "mse") {
      table["checks"].push_back(check("mse: largest output rows ratio of mean squares",
                                      *std::max_element(p.output.begin(), p.output.end()), 0.0, 0.0));
    } else {
      table["checks"].push_back(slope_check("output rows slope in C", p.output, -2.0));
      table["checks"].push_back(slope_check("output rows slope in C (mean r^2)", p.output_pairs, -2.0));
      plot_series.push_back(series(loss + " output rows", cs, output, false));
      plot_series.push_back(series("C^-2", cs, reference_line(cs, output, -2.0), true));
    }
    plot_series.push_back(series(loss + " hidden rows", cs, hidden, false));
    plot_series.push_back(series("C^-1", cs, reference_line(cs, hidden, -1.0), true));
  }
  table["plot"] = {{"title", "1 hidden layer: ratio of mean squares vs classes"}, {"xlabel", "classes C"},
                   {"ylabel", "mean ||H_ij||^2 / mean ||H_ii||^2"}, {"log_x", true}, {"log_y", true},
                   {"series", plot_series}};
  return table;
}

// The mean over pairs of different tensors (layers) s != t of a record's (T, T) matrix `key`.
double cross_layer_mean(const ProbedRun& run, const nlohmann::json& record, const char* key) {
  if (!record.contains(key)) probe_number(run, record, key);  // throws, naming the run
  const auto& pairs = record[key];
  double sum = 0;
  int count = 0;
  for (size_t s = 0; s < pairs.size(); ++s) {
    for (size_t t = 0; t < pairs.size(); ++t) {
      if (s == t) continue;
      sum += pairs[s][t].get<double>();
      ++count;
    }
  }
  return count > 0 ? sum / count : std::nan("");
}

// "slope -1.9 +- 0.3: -2 lies in the 95% CI, -1 does not" for the two candidate laws.
std::string slope_verdict(const LineFit& fit) {
  std::string inside, outside;
  for (int law : {-1, -2}) {
    auto& list = std::abs(fit.slope - law) <= fit.half_width ? inside : outside;
    list += (list.empty() ? "" : " and ") + std::to_string(law);
  }
  const int nearer = std::abs(fit.slope + 1.0) < std::abs(fit.slope + 2.0) ? -1 : -2;
  return fmt::format("slope {:.3g} +- {:.2g}: {}", fit.slope, fit.half_width,
                     inside.empty() ? fmt::format("neither -1 nor -2 lies in the 95% CI, {} is nearer", nearer)
                                    : inside + " in the 95% CI" + (outside.empty() ? "" : ", " + outside + " not"));
}

// The LLM implication (output_ratio / row_ratio probes of text runs): per matrix and probe type
// ("lm_head.weight (output_ratio)"), R over its rows against the vocabulary, at the first and
// the last probe of that type.
nlohmann::json vocab_slopes(const std::vector<ProbedRun>& runs) {
  nlohmann::json table = {
      {"claim", "LLM implication: an LM head's rows are its classes (C = vocabulary). R = mean "
                "||H_ij||^2 / mean ||H_ii||^2 over its rows ~ C^slope: -1 (Theorem 2's hidden-row "
                "law) or -2 (its output-row law)? Exact values (output_ratio probe: the head) or estimates from "
                "sampled rows (row_ratio probe), mean +- "
                "95% CI over seeds, at the first and the last probe; slopes fitted on every seed's "
                "point, with 95% CIs"}};
  // tensor -> (first | last) -> vocabulary and R per run
  struct Points {
    std::vector<double> c, first, last;
    double last_step = 0;
  };
  std::map<std::string, Points> by_tensor;  // "<matrix> (<probe type>)"
  for (const auto& run : runs) {
    const auto vocab = run.config["data"]["tokenizer"]["vocab"];
    if (!vocab) throw std::runtime_error(run.id + ": vocab_slopes needs text data (data.tokenizer.vocab)");
    // The first and the last record of each probe type that measures R.
    std::map<std::string, std::pair<const nlohmann::json*, const nlohmann::json*>> ends;
    for (const auto& record : run.probes) {
      if (!record.contains("ratio_of_mean_squares")) continue;
      auto& [first, last] = ends[record.value("type", "")];
      if (first == nullptr) first = &record;
      last = &record;
    }
    if (ends.empty()) probe_number(run, run.probes.front(), "ratio_of_mean_squares");  // throws
    for (const auto& [type, records] : ends) {
      const auto& [first, last] = records;
      for (const auto& [name, value] : (*first)["ratio_of_mean_squares"].items()) {
        if (!(*last)["ratio_of_mean_squares"].contains(name)) continue;
        auto& p = by_tensor[name + " (" + type + ")"];
        p.c.push_back(vocab.as<double>());
        p.first.push_back(value["ratio"].get<double>());
        p.last.push_back((*last)["ratio_of_mean_squares"][name]["ratio"].get<double>());
        p.last_step = (*last)["step"].get<double>();
      }
    }
  }
  nlohmann::json plot_series = nlohmann::json::array();
  for (const auto& [name, p] : by_tensor) {
    std::map<double, std::vector<size_t>> runs_at;
    for (size_t i = 0; i < p.c.size(); ++i) runs_at[p.c[i]].push_back(i);
    std::vector<double> cs, first_means, last_means;
    for (const auto& [c, indices] : runs_at) {
      std::vector<double> f, l;
      for (size_t i : indices) {
        f.push_back(p.first[i]);
        l.push_back(p.last[i]);
      }
      const auto mf = mean_interval(f), ml = mean_interval(l);
      add_row(table, {{"tensor", name}, {"vocab C", c}, {"seeds", indices.size()},
                      {"R first probe", mf.mean}, {"CI95 +-", mf.half_width},
                      {"R last probe", ml.mean}, {"CI95 +- (last)", ml.half_width},
                      {"last probe step", p.last_step}});
      cs.push_back(c);
      first_means.push_back(mf.mean);
      last_means.push_back(ml.mean);
    }
    for (const auto& [when, values] : {std::pair{"first probe", &p.first}, std::pair{"last probe", &p.last}}) {
      std::vector<double> lx, ly;
      for (size_t i = 0; i < p.c.size(); ++i) {
        lx.push_back(std::log(p.c[i]));
        ly.push_back(std::log((*values)[i]));
      }
      const auto fit = fit_line(lx, ly);
      auto c = check(fmt::format("{}: slope of log R in log C, {}", name, when), fit.slope,
                     fit.half_width, "-1 or -2");
      c["verdict"] = slope_verdict(fit);
      table["checks"].push_back(c);
    }
    plot_series.push_back(series(name + " first probe", cs, first_means, false));
    plot_series.push_back(series(name + " last probe", cs, last_means, false));
    plot_series.push_back(series("C^-1", cs, reference_line(cs, first_means, -1.0), true));
    plot_series.push_back(series("C^-2", cs, reference_line(cs, first_means, -2.0), true));
  }
  table["plot"] = {{"title", "LM head: ratio of mean squares vs vocabulary"}, {"xlabel", "vocabulary C"},
                   {"ylabel", "mean ||H_ij||^2 / mean ||H_ii||^2"}, {"log_x", true}, {"log_y", true},
                   {"series", plot_series}};
  return table;
}

nlohmann::json training_dynamics(const std::vector<ProbedRun>& runs) {
  nlohmann::json table = {
      {"claim", "dynamic force: cross-layer blocks (H_wv ~ optimality gap) shrink as training proceeds"}};
  nlohmann::json plot_series = nlohmann::json::array();
  for (const auto& run : runs) {
    std::vector<double> steps, cross;
    for (const auto& record : run.probes) {
      steps.push_back(record["step"].get<double>());
      cross.push_back(cross_layer_mean(run, record, "ratio_sq_by_tensor_pair"));
      add_row(table, {{"run", run.id}, {"step", record["step"]},
                      {"probe loss", record.value("loss", std::nan(""))},
                      {"mean r^2", record["ratio_sq_mean"]}, {"cross-layer mean r^2", cross.back()},
                      {"cross-layer ratio of mean squares",
                       cross_layer_mean(run, record, "norm_sq_ratio_by_tensor_pair")}});
    }
    if (steps.size() > 1) {
      table["checks"].push_back(check(run.id + ": cross-layer r^2, last probe / first probe",
                                      cross.back() / cross.front(), std::nan(""), "< 1"));
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
  else if (kind == "vocab_slopes") table = vocab_slopes(runs);
  else table = training_dynamics(runs);
  table["kind"] = kind;
  table["missing"] = missing;
  return table;
}

}  // namespace blockopt::experiments
