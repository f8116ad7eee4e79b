#include <blockopt/experiments/report.h>
#include <blockopt/experiments/detail/charts.h>
#include <blockopt/experiments/sweep.h>
#include <blockopt/experiments/theory.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <tuple>

namespace blockopt::experiments {

namespace charts = detail::charts;
using charts::Unit;

namespace {

// One loss of metrics.jsonl ("loss" or "eval_loss") against the step and the wall time.
struct Curve {
  std::vector<double> steps, seconds, loss;
};

Curve read_curve(const fs::path& metrics, const std::string& key) {
  Curve c;
  for (const auto& r : read_jsonl(metrics)) {
    if (!r.contains(key) || !r[key].is_number()) continue;
    c.steps.push_back(r["step"].get<double>());
    c.seconds.push_back(r.contains("wall_time") ? r["wall_time"].get<double>() : std::nan(""));
    c.loss.push_back(r[key].get<double>());
  }
  return c;
}

// A log axis when every value is positive and they span over two decades.
bool spans_decades(const std::vector<charts::Series>& series) {
  double lo = INFINITY, hi = 0.0;
  for (const auto& s : series) {
    for (double y : s.y) {
      if (!std::isfinite(y)) continue;
      if (y <= 0.0) return false;
      lo = std::min(lo, y);
      hi = std::max(hi, y);
    }
  }
  return hi > 100.0 * lo;
}

// One loss (key of metrics.jsonl) over several seeds' runs: the mean with a min-max band,
// against the step and against the seeds' mean wall time at that step. Markers when there is a
// single point (a line through one point does not show).
std::pair<charts::Series, charts::Series> seed_band(const std::string& name, const std::vector<fs::path>& runs,
                                                    const std::string& key) {
  std::map<double, std::vector<double>> loss, seconds;  // by step
  for (const auto& run : runs) {
    const auto curve = read_curve(run / "metrics.jsonl", key);
    for (size_t i = 0; i < curve.steps.size(); ++i) {
      loss[curve.steps[i]].push_back(curve.loss[i]);
      seconds[curve.steps[i]].push_back(curve.seconds[i]);
    }
  }
  charts::Series by_step{name, {}, {}, {}, {}, loss.size() == 1};
  auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); };
  for (const auto& [step, values] : loss) {
    by_step.x.push_back(step);
    by_step.y.push_back(mean(values));
    by_step.lo.push_back(*std::min_element(values.begin(), values.end()));
    by_step.hi.push_back(*std::max_element(values.begin(), values.end()));
  }
  auto by_seconds = by_step;
  by_seconds.x.clear();
  for (const auto& [step, values] : seconds) by_seconds.x.push_back(mean(values));
  return {by_step, by_seconds};
}

// mean +- the half width of its 95% interval over seeds (sweep_compare.cpp: stats_json).
std::string number(const nlohmann::json& stats, const char* unit = "") {
  if (!stats.is_object()) return "&ndash;";
  if (stats.contains("ci95") && stats["ci95"].is_number()) {
    return fmt::format("{:.4g} &plusmn; {:.2g}{} (n={})", stats["mean"].get<double>(),
                       stats["ci95"].get<double>(), unit, stats["count"].get<int>());
  }
  return fmt::format("{:.4g}{} (n={})", stats["mean"].get<double>(), unit, stats.value("count", 1));
}

// 548_000 -> "535 KiB".
std::string bytes_text(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int unit = 0;
  while (bytes >= 1024.0 && unit < 3) {
    bytes /= 1024.0;
    ++unit;
  }
  // 3 significant digits without an exponent: 1020 MiB, 37.5 KiB, 1.02 GiB.
  return fmt::format(unit == 0 || bytes >= 100.0 ? "{:.0f} {}" : "{:.3g} {}", bytes, units[unit]);
}

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int k = 3; k >= 0; --k) out += table[(v >> (6 * k)) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= uint8_t(bytes[i + 1]) << 8;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Splits a probe file stem such as "block_norms_10_heatmap" into the group name with the
// step replaced by '*' ("block_norms_*_heatmap") and the step (10); -1 without a number.
std::pair<std::string, int64_t> frame_group(const std::string& stem) {
  size_t start = 0;
  while (start <= stem.size()) {
    const auto end = std::min(stem.find('_', start), stem.size());
    const auto token = stem.substr(start, end - start);
    if (!token.empty() && token.find_first_not_of("0123456789") == std::string::npos) {
      return {stem.substr(0, start) + "*" + stem.substr(end), std::stoll(token)};
    }
    start = end + 1;
  }
  return {stem, -1};
}

// Every numeric scalar of the probe records against the step: one small chart per quantity
// (their scales differ by decades), a short numeric list (top eigenvalues) as one chart with a
// series per entry.
std::string probe_scalar_plots(const std::vector<nlohmann::json>& probes) {
  // (type, key) -> series by entry.
  std::map<std::pair<std::string, std::string>, std::map<size_t, charts::Series>> quantities;
  for (const auto& r : probes) {
    if (!r.contains("step")) continue;
    const std::string type = r.value("type", "probe");
    auto add = [&](const std::string& key, size_t entry, const std::string& name, const nlohmann::json& value) {
      auto& series = quantities[{type, key}][entry];
      series.name = name;
      series.markers = true;
      series.x.push_back(r["step"].get<double>());
      series.y.push_back(value.get<double>());
    };
    for (const auto& [key, value] : r.items()) {
      if (key == "step" || key == "seconds") continue;  // seconds: probe cost, not a Hessian quantity
      if (value.is_number()) add(key, 0, key, value);
      if (value.is_array() && value.size() <= 10 && !value.empty() && value[0].is_number()) {
        for (size_t i = 0; i < value.size(); ++i) add(key, i, fmt::format("{}[{}]", key, i), value[i]);
      }
    }
  }
  std::string html;
  for (const auto& [type_key, by_entry] : quantities) {
    std::vector<charts::Series> series;
    for (const auto& [entry, s] : by_entry) {
      // Constants (parameter counts, probe settings) are settings, not measurements.
      if (s.y.size() > 1 && std::all_of(s.y.begin(), s.y.end(), [&](double y) { return y == s.y[0]; })) continue;
      series.push_back(s);
    }
    if (series.empty()) continue;
    const auto& [type, key] = type_key;
    html += charts::line_chart({type + ": " + key, {"step"}, {key, spans_decades(series)}}, series);
  }
  return html.empty() ? "" : "<div class=\"grid\">" + html + "</div>";
}

// SLQ spectral densities (probe records with "density"): the full model at every probed step,
// and the principal blocks at the last one. Values below 1e-5 of the peak are left out of the
// log axis.
std::string spectrum_plots(const std::vector<nlohmann::json>& probes) {
  std::vector<charts::Series> full, blocks;
  auto curve = [](const std::string& name, const nlohmann::json& grid, const nlohmann::json& density) {
    charts::Series s{name, grid, density, {}, {}, false};
    const double peak = *std::max_element(s.y.begin(), s.y.end());
    for (auto& y : s.y) y = y < 1e-5 * peak ? std::nan("") : y;
    return s;
  };
  for (const auto& r : probes) {
    if (!r.contains("density")) continue;
    const auto& d = r["density"];
    full.push_back(curve(fmt::format("step {}", r["step"].get<int64_t>()), d["grid"], d["full"]));
    blocks.clear();
    for (const auto& [name, density] : d["blocks"].items()) blocks.push_back(curve(name, d["grid"], density));
  }
  if (full.empty()) return "";
  return charts::line_chart({"SLQ spectral density, full model", {"eigenvalue"}, {"density", true}}, full) +
         charts::line_chart({"SLQ spectral density of principal blocks, last probe", {"eigenvalue"}, {"density", true}},
                            blocks);
}

// The summary scalars `keys` of one probe type against the step, one plot per key and one series
// per run: how the runs (optimizers) of a sweep compare.
std::string probe_comparison_plots(const fs::path& dir, const nlohmann::json& index,
                                   const std::string& type, const std::vector<std::string>& keys) {
  std::string html;
  for (const auto& key : keys) {
    std::vector<charts::Series> series;
    for (const auto& run : index["runs"]) {
      const auto id = run["id"].get<std::string>();
      charts::Series s{id, {}, {}, {}, {}, true};
      for (const auto& r : read_jsonl(dir / "runs" / id / "hessian" / "probes.jsonl")) {
        if (r.value("type", "") != type || !r.contains(key) || !r[key].is_number()) continue;
        s.x.push_back(r["step"].get<double>());
        s.y.push_back(r[key].get<double>());
      }
      if (!s.x.empty()) series.push_back(s);
    }
    html += charts::line_chart({type + ": " + key, {"step"}, {key}}, series);
  }
  return html.empty() ? "" : "<h2>" + type + " across runs</h2>" + html;
}

// Per-layer telemetry (telemetry.h) of one run per label: for each quantity, its median and
// its worst (largest) value over the parameter tensors, against the step.
std::string telemetry_plots(const std::vector<std::pair<std::string, fs::path>>& runs) {
  const std::vector<std::pair<std::string, std::string>> quantities = {
      {"update_ratio", "||dW|| / ||W||"}, {"update_rms", "update RMS"},
      {"update_spectral", "||dW||_2"}, {"row_cv", "row-norm CV of dW"},
      {"dead_rows", "dead-row fraction"}, {"grad_norm", "||G||"}};
  std::string html;
  for (const auto& [key, description] : quantities) {
    std::vector<charts::Series> median, worst;
    for (const auto& [label, run_dir] : runs) {
      charts::Series m{label, {}, {}, {}, {}, false}, w{label, {}, {}, {}, {}, false};
      for (const auto& record : read_jsonl(run_dir / "telemetry.jsonl")) {
        std::vector<double> values;
        for (const auto& [name, stats] : record["tensors"].items()) {
          if (stats.contains(key) && stats[key].is_number()) values.push_back(stats[key]);
        }
        if (values.empty()) continue;
        std::sort(values.begin(), values.end());
        m.x.push_back(record["step"].get<double>());
        m.y.push_back(values[(values.size() - 1) / 2]);
        w.x.push_back(record["step"].get<double>());
        w.y.push_back(values.back());
      }
      if (m.x.empty()) continue;
      median.push_back(m);
      worst.push_back(w);
    }
    if (median.empty()) continue;
    const bool log = spans_decades(median) && spans_decades(worst);
    html += charts::line_chart({description + ": median over tensors", {"step"}, {key, log}}, median);
    html += charts::line_chart({description + ": worst tensor", {"step"}, {key, log}}, worst);
  }
  return html.empty() ? "" : "<h2>Per-layer telemetry</h2><div class=\"grid\">" + html + "</div>";
}

// The frames of hessian/ grouped by name without the step, each group shown with a slider over
// the probe steps: interactive heatmaps (<stem>.heatmap.json) and the other PNG images
// (spectrum histograms; a heatmap's PNG is left out for its interactive version).
std::string hessian_section(const fs::path& run_dir, const std::string& id_prefix) {
  const auto dir = run_dir / "hessian";
  if (!fs::exists(dir)) return "";
  const std::string heatmap_suffix = ".heatmap.json";
  std::map<std::string, std::vector<std::pair<int64_t, fs::path>>> groups;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    const bool heatmap = name.size() > heatmap_suffix.size() &&
                         name.compare(name.size() - heatmap_suffix.size(), heatmap_suffix.size(), heatmap_suffix) == 0;
    const auto stem = heatmap ? name.substr(0, name.size() - heatmap_suffix.size()) : entry.path().stem().string();
    if (!heatmap && (entry.path().extension() != ".png" || fs::exists(dir / (stem + heatmap_suffix)))) continue;
    auto [group, step] = frame_group(stem);
    groups[group].emplace_back(step, entry.path());
  }
  const auto probes = read_jsonl(dir / "probes.jsonl");
  std::string html = "<h3>Hessian probe</h3>" + probe_scalar_plots(probes) + spectrum_plots(probes);
  if (groups.empty()) return html;
  int g = 0;
  for (auto& [name, steps_and_frames] : groups) {
    std::sort(steps_and_frames.begin(), steps_and_frames.end());
    std::vector<fs::path> frames;
    for (const auto& item : steps_and_frames) frames.push_back(item.second);
    const auto id = fmt::format("{}h{}", id_prefix, g++);
    html += fmt::format("<h4>{}</h4><div>", name);
    for (size_t i = 0; i < frames.size(); ++i) {
      const bool png = frames[i].extension() == ".png";
      html += fmt::format(R"(<figure class="{}" style="display:{}">{}<figcaption>{}</figcaption></figure>)", id,
                          i + 1 == frames.size() ? "block" : "none",
                          png ? "<img src=\"data:image/png;base64," + base64(read_file(frames[i])) + "\">"
                              : charts::heatmap(nlohmann::json::parse(read_file(frames[i]))),
                          frames[i].filename().string());
    }
    if (frames.size() > 1) {
      html += fmt::format(
          R"(<input type="range" min="0" max="{}" value="{}" oninput="var f=document.getElementsByClassName('{}');for(var i=0;i<f.length;i++)f[i].style.display=(i==this.value)?'block':'none'">)",
          frames.size() - 1, frames.size() - 1, id);
    }
    html += "</div>";
  }
  return html;
}

std::string cell_text(const nlohmann::json& value) {
  if (value.is_null()) return "";
  if (value.is_number_float()) return fmt::format("{:.4g}", value.get<double>());
  return charts::escape(value.is_string() ? value.get<std::string>() : value.dump());
}

// Measured against predicted (theory.h), written to <dir>/theory.json and shown as tables and
// a plot (predictions as lines, measurements as markers).
std::string theory_section(const fs::path& dir, const std::vector<fs::path>& run_dirs) {
  const auto theory = evaluate_theory(run_dirs);
  if (theory.is_null()) return "";
  write_file_atomic(dir / "theory.json", theory.dump(2) + "\n");
  std::string html = fmt::format("<h2>Theory: {}</h2><p>{}</p>", cell_text(theory["kind"]),
                                 cell_text(theory["claim"]));
  if (theory.contains("checks")) {
    html += "<table><tr><th>quantity</th><th>measured</th><th>95% CI +-</th><th>predicted</th></tr>";
    for (const auto& check : theory["checks"]) {
      html += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                          cell_text(check["quantity"].get<std::string>() +
                                    (check.contains("verdict") ? " (" + check["verdict"].get<std::string>() + ")" : "")),
                          cell_text(check["measured"]),
                          cell_text(check.value("ci95", nlohmann::json())), cell_text(check["predicted"]));
    }
    html += "</table>";
  }
  if (theory.contains("rows")) {
    html += "<table><tr>";
    for (const auto& column : theory["columns"]) html += "<th>" + cell_text(column) + "</th>";
    html += "</tr>";
    for (const auto& row : theory["rows"]) {
      html += "<tr>";
      for (const auto& value : row) html += "<td>" + cell_text(value) + "</td>";
      html += "</tr>";
    }
    html += "</table>";
  }
  if (theory.contains("plot")) {
    const auto& plot = theory["plot"];
    std::vector<charts::Series> series;
    for (const auto& s : plot["series"]) {
      series.push_back({s["name"], s["x"], s["y"], {}, {}, !s["line"].get<bool>()});
    }
    html += charts::line_chart({plot["title"], {plot["xlabel"], plot["log_x"]}, {plot["ylabel"], plot["log_y"]}}, series);
  }
  if (!theory["missing"].empty()) {
    html += "<p class=\"diverged\">no probe record (left out): " + cell_text(theory["missing"]) + "</p>";
  }
  return html;
}

std::string page(const std::string& title, const std::string& body) {
  return fmt::format(R"(<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{0}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
.grid{{display:flex;flex-wrap:wrap;gap:8px}}.grid .chart{{width:490px}}.chart{{margin:1em 0}}
.heatmap-scale{{display:flex;align-items:center;gap:6px;font-size:12px}}.heatmap-scale i{{display:inline-block;width:200px;height:10px}}
.heatmap-tip,.heatmap-tensors{{font-size:12px;color:#444}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
th{{background:#f4f4f4}}td:first-child{{text-align:left}}img{{max-width:480px;image-rendering:pixelated}}
.diverged{{color:#b00}}</style></head>
<body><h1>{0}</h1>
<p class="hint">Charts: drag to zoom, double-click to zoom out; click a legend entry to hide its series.</p>
{1}
{2}</body></html>
)",
                     title, body, charts::page_scripts());
}

std::string single_run(const fs::path& dir) {
  auto summary = nlohmann::json::parse(read_file(dir / "summary.json"), nullptr, false);
  std::string body;
  if (summary.is_object()) {
    body += "<table>";
    for (auto key : {"status", "message", "steps", "final_loss", "wall_time", "parameters", "flops_per_item",
                     "optimizer_state_bytes", "peak_rss_bytes", "seed", "versions"}) {
      if (!summary.contains(key)) continue;
      const auto& value = summary[key];
      const std::string name = key;
      // Sizes and durations in human units: 535 KiB, 12.3 s.
      const std::string text = !value.is_number()                  ? cell_text(value)
                               : name.size() > 6 && name.compare(name.size() - 6, 6, "_bytes") == 0
                                   ? bytes_text(value.get<double>())
                               : name == "wall_time" ? fmt::format("{:.3g} s", value.get<double>())
                                                     : cell_text(value);
      body += fmt::format("<tr><td>{}</td><td>{}</td></tr>", key, text);
    }
    body += "</table>";
  }
  const auto train = read_curve(dir / "metrics.jsonl", "loss");
  const auto eval = read_curve(dir / "metrics.jsonl", "eval_loss");
  const charts::Axis step{"step"}, loss{"loss", true}, seconds{"wall time", false, Unit::Seconds};
  body += "<div class=\"grid\">";
  body += charts::line_chart({"loss against steps", step, loss},
                             {{"train", train.steps, train.loss, {}, {}, false},
                              {"eval", eval.steps, eval.loss, {}, {}, true}});
  body += charts::line_chart({"loss against wall time", seconds, loss},
                             {{"train", train.seconds, train.loss, {}, {}, false},
                              {"eval", eval.seconds, eval.loss, {}, {}, true}});
  body += "</div>";
  if (fs::exists(dir / "config.resolved.yaml")) {
    body += "<details><summary>Resolved config</summary><pre>" +
            charts::escape(read_file(dir / "config.resolved.yaml")) + "</pre></details>";
  }
  if (fs::exists(dir / "optimizer_layout.txt")) {
    body += "<details><summary>Optimizer layout</summary><pre>" +
            charts::escape(read_file(dir / "optimizer_layout.txt")) + "</pre></details>";
  }
  return body + telemetry_plots({{"run", dir}}) + theory_section(dir, {dir}) +
         hessian_section(dir, "run");
}

// Pairwise Welch tests in plain words, and the performance profile across workloads.
std::string verdicts_section(const nlohmann::json& comparison) {
  std::string html;
  if (!comparison["pairwise"].empty()) {
    html += "<h2>Verdicts</h2><p>Final eval loss, Welch's t-test per pair of optimizers on the "
            "same workload; d is the effect size in pooled standard deviations.</p><ul>";
    for (const auto& pair : comparison["pairwise"]) html += "<li>" + charts::escape(pair["verdict"].get<std::string>()) + "</li>";
    html += "</ul>";
  }
  if (comparison.contains("performance_profile")) {
    const auto& profile = comparison["performance_profile"];
    html += "<h2>Performance profile</h2><p>The fraction of workloads on which each optimizer "
            "reached the target within &tau; &times; the fastest one's time (mean over seeds; "
            "an optimizer whose seeds did not all reach it does not count).</p><table><tr><th>optimizer</th>";
    for (const auto& tau : profile["tau"]) html += fmt::format("<th>&tau; = {:.3g}</th>", tau.get<double>());
    html += "</tr>";
    for (const auto& [entry, row] : profile["optimizers"].items()) {
      html += "<tr><td>" + charts::escape(entry) + "</td>";
      for (const auto& fraction : row["fraction"]) html += fmt::format("<td>{:.2f}</td>", fraction.get<double>());
      html += "</tr>";
    }
    html += "</table>";
  }
  return html;
}

std::string sweep_page(const fs::path& dir) {
  const auto comparison = compare_sweep(dir);
  write_file_atomic(dir / "comparison.json", comparison.dump(2) + "\n");
  const auto index = nlohmann::json::parse(read_file(dir / "sweep.json"));
  const double target = comparison.value("target_loss", 0.0);
  // A sweep that tests a theory (paper configs) leads with it.
  std::vector<fs::path> run_dirs;
  for (const auto& run : index["runs"]) run_dirs.push_back(dir / "runs" / run["id"].get<std::string>());
  std::string body = theory_section(dir, run_dirs);

  const bool tuned = comparison.contains("tune");
  body += fmt::format(
      "<h2>Optimizers at their best learning rate</h2><p>{}. Values are means &plusmn; the half "
      "width of their 95% confidence interval (Student t over seeds).</p>",
      tuned ? fmt::format("Tuned: lr = 2<sup>k</sup> &times; the base lr, k from {} (extended up "
                          "to {} while the best was on an edge) on seeds {}; then the final seeds {} "
                          "at the best lr, whose statistics these are",
                          comparison["tune"]["lr_log2"].dump(), comparison["tune"]["extend_to"].dump(),
                          comparison["tune"]["tuning_seeds"].dump(), comparison["tune"]["final_seeds"].dump())
            : std::string("Statistics of the best lr's seeds (the same seeds chose it, so they are "
                          "biased low; sweep.tune reruns the best lr on fresh seeds)"));
  body += "<table><tr><th>optimizer</th><th>lr</th><th>lr on a grid edge</th>"
          "<th>final eval loss</th><th>seeds at target</th><th>steps to target</th>"
          "<th>time to target (s)</th><th>target rule</th><th>state</th><th>peak RSS</th>"
          "<th>diverged / failed (all lrs)</th></tr>";
  // Loss against steps and wall time: train and eval, at each optimizer's best lr.
  std::vector<charts::Series> train_steps, train_seconds, eval_steps, eval_seconds, sensitivity;
  std::vector<std::pair<std::string, fs::path>> telemetry_runs;  // one run per label
  for (const auto& [label, info] : comparison["optimizers"].items()) {
    int diverged = 0, failed = 0;
    charts::Series lr_curve{label, {}, {}, {}, {}, false};
    for (const auto& cell : info["grid"]) {
      diverged += cell["diverged"].get<int>();
      failed += cell["failed"].get<int>();
      const auto& loss = cell["final_eval_loss"];
      if (loss.is_object()) {
        const double half = loss.contains("ci95") && loss["ci95"].is_number() ? loss["ci95"].get<double>() : 0.0;
        lr_curve.x.push_back(cell["lr"]);
        lr_curve.y.push_back(loss["mean"]);
        lr_curve.lo.push_back(loss["mean"].get<double>() - half);
        lr_curve.hi.push_back(loss["mean"].get<double>() + half);
      }
    }
    sensitivity.push_back(lr_curve);
    const auto& stats = info.contains("final") ? info["final"] : info["best"];
    if (!stats.is_object()) {
      body += fmt::format(R"(<tr><td>{}</td><td colspan="9" class="diverged">no learning rate finished on every seed</td><td>{} / {}</td></tr>)",
                          label, diverged, failed);
      continue;
    }
    const nlohmann::json rss = stats["peak_rss_bytes"], state = stats["optimizer_state_bytes"];
    const bool on_edge = info.value("best_on_edge", false);
    const std::string reached = stats.contains("reached_target")
                                    ? fmt::format("{:.0f}%", 100.0 * stats["reached_target"].get<double>())
                                    : "&ndash;";
    const std::string rule = stats.contains("target_rule")
                                 ? fmt::format("{} ({:.3g})", stats["target_rule"]["passed"].get<bool>() ? "met" : "not met",
                                               stats["target_rule"]["value"].get<double>())
                                 : "&ndash;";
    body += fmt::format(
        "<tr><td>{}</td><td>{:.3g}</td><td{}>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
        label, stats["lr"].get<double>(), on_edge ? R"( class="diverged")" : "", on_edge ? "yes" : "no",
        number(stats["final_eval_loss"]), reached, number(stats["steps_to_target"]),
        number(stats["time_to_target"]), rule,
        state.is_object() ? bytes_text(state["mean"].get<double>()) : "&ndash;",
        rss.is_object() ? bytes_text(rss["max"].get<double>()) : "&ndash;", diverged, failed);
    // The seeds behind the statistics.
    const std::string stage = tuned ? "final" : "";
    std::vector<fs::path> seed_runs;
    for (const auto& run : index["runs"]) {
      if (run["optimizer"] == label && run["lr_multiplier"] == stats["lr_multiplier"] &&
          run.value("stage", "") == stage) {
        seed_runs.push_back(dir / "runs" / run["id"].get<std::string>());
      }
    }
    if (seed_runs.empty()) continue;
    telemetry_runs.emplace_back(label, seed_runs.front());
    const auto name = fmt::format("{} (lr {:.3g})", label, stats["lr"].get<double>());
    auto [by_step, by_seconds] = seed_band(name, seed_runs, "loss");
    train_steps.push_back(by_step);
    train_seconds.push_back(by_seconds);
    std::tie(by_step, by_seconds) = seed_band(name, seed_runs, "eval_loss");
    eval_steps.push_back(by_step);
    eval_seconds.push_back(by_seconds);
  }
  body += "</table>";
  const charts::Axis step{"step"}, loss{"loss", true}, seconds{"wall time", false, Unit::Seconds};
  body += "<p>Loss at each optimizer's best lr: the mean over its seeds, with the band from the "
          "lowest to the highest seed (against wall time: at the seeds' mean time of each step).</p>"
          "<div class=\"grid\">";
  body += charts::line_chart({"training loss against steps", step, loss}, train_steps);
  body += charts::line_chart({"eval loss against steps", step, loss}, eval_steps);
  body += charts::line_chart({"training loss against wall time", seconds, loss}, train_seconds);
  body += charts::line_chart({"eval loss against wall time", seconds, loss}, eval_seconds);
  body += "</div>";
  if (target > 0.0) body += fmt::format("<p>Target: eval loss {:.4g}.</p>", target);
  body += verdicts_section(comparison);
  body += charts::line_chart({tuned ? "lr sensitivity (tuning seeds): final eval loss, mean and 95% interval"
                                    : "lr sensitivity: final eval loss, mean and 95% interval",
                              {"learning rate", true}, {"final eval loss", true}},
                             sensitivity);
  body += telemetry_plots(telemetry_runs);
  std::map<std::string, int> by_status;
  std::string rows;
  for (const auto& run : comparison["runs"]) {
    const std::string status = run["status"];
    ++by_status[status];
    rows += fmt::format(R"(<tr><td>{}</td><td class="{}">{}</td><td>{}</td></tr>)", run["id"].get<std::string>(),
                        status == "completed" ? "" : "diverged", status, cell_text(run["message"]));
  }
  std::string counts;
  for (const auto& [status, n] : by_status) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, status);
  body += fmt::format("<h2>Runs</h2><details><summary>{} runs: {}</summary><table><tr><th>run</th><th>status</th>"
                      "<th>message</th></tr>{}</table></details>",
                      comparison["runs"].size(), counts, rows);
  // The neurons' curvature spread under each optimizer (probes/row_heterogeneity.cpp).
  body += probe_comparison_plots(dir, index, "row_heterogeneity", {"top_cv_mean", "trace_cv_mean", "js_mean"});
  for (const auto& run : index["runs"]) {
    const auto section = hessian_section(dir / "runs" / run["id"].get<std::string>(), run["id"].get<std::string>());
    if (!section.empty()) body += "<h2>" + run["id"].get<std::string>() + "</h2>" + section;
  }
  return body;
}

}  // namespace

fs::path write_report(const fs::path& run_dir) {
  const bool sweep = fs::exists(run_dir / "sweep.json");
  if (!sweep && !fs::exists(run_dir / "summary.json")) {
    throw std::runtime_error(run_dir.string() + " is not a run directory (no summary.json or sweep.json)");
  }
  const auto body = sweep ? sweep_page(run_dir) : single_run(run_dir);
  const auto path = run_dir / "report.html";
  write_file_atomic(path, page("blockopt report: " + run_dir.filename().string(), body));
  return path;
}

}  // namespace blockopt::experiments
